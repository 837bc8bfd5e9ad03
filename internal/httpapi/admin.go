package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/wopr-network/opsd/internal/state"
)

// Snapshot is one stored backup of a target (the platform's shape).
type Snapshot struct {
	Path   string  `json:"path"`
	Date   string  `json:"date"`
	SizeMB float64 `json:"sizeMb"`
}

// AdminOptions wire the admin API.
type AdminOptions struct {
	// Snapshots lists a target's stored backups (keys with manifests), newest first.
	Snapshots func(ctx context.Context, containerID string) ([]Snapshot, error)
	// Alerts returns the alert statuses (JSON-marshalable slice).
	Alerts func() any
	// Health returns the /admin/health body.
	Health func(ctx context.Context) any
	// Restore starts a container restore and returns its id; errors wrap ErrForbidden (the key
	// is not that container's), ErrNotFound, ErrBadRequest or ErrConflict (a restore of that
	// container is already running).
	Restore func(ctx context.Context, containerID string, o ContainerRestoreRequest) (int64, error)
	// NodeRestore starts restoring every container a (lost) node backed up onto this node and
	// returns its id; errors wrap ErrNotFound or ErrBadRequest.
	NodeRestore func(ctx context.Context, node string, o NodeRestoreRequest) (int64, error)
	// CancelRestore cancels a running restore (it rolls back); errors wrap ErrNotFound or
	// ErrConflict (it is not running here).
	CancelRestore func(ctx context.Context, id int64) error
}

// ContainerRestoreRequest is the body of POST /api/admin/backups/{containerId}/restore.
type ContainerRestoreRequest struct {
	// RemotePath is the key of the backup to restore (required).
	RemotePath string `json:"remotePath"`
	// TargetNodeID, when set, must be this node.
	TargetNodeID string `json:"targetNodeId"`
	// AllowBinds and AllowHostAccess are the CLI's --allow-bind and --allow-host-access, for a
	// container recreated from its captured spec (as in NodeRestoreRequest).
	AllowBinds      []string `json:"allowBinds"`
	AllowHostAccess bool     `json:"allowHostAccess"`
}

// decodeStrict decodes one JSON object of at most 64 KiB from r into v: unknown fields and data
// after the object are errors. An empty body is io.EOF.
func decodeStrict(r io.Reader, v any) error {
	dec := json.NewDecoder(io.LimitReader(r, 64<<10))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil && dec.Decode(&struct{}{}) != io.EOF {
		err = errors.New("data after the JSON object")
	}
	return err
}

// NodeRestoreRequest is the optional body of POST /api/admin/nodes/{node}/restore.
type NodeRestoreRequest struct {
	Parallel int `json:"parallel"`
	// StartParallel containers created and started at once (0: as many as Parallel).
	StartParallel int      `json:"startParallel"`
	Only          []string `json:"only"`
	Exclude       []string `json:"exclude"`
	// AllowBinds and AllowHostAccess are the CLI's --allow-bind and --allow-host-access: the
	// host access the captured specs may ask for beyond bind mounts under the WOPR_HOME base.
	AllowBinds      []string `json:"allowBinds"`
	AllowHostAccess bool     `json:"allowHostAccess"`
}

// Errors the restore endpoint maps to status codes.
var (
	ErrForbidden  = errors.New("forbidden")
	ErrBadRequest = errors.New("bad request")
)

// EnableAdmin adds the admin routes, all behind the bearer token.
func (s *Server) EnableAdmin(o AdminOptions) {
	s.mux.HandleFunc("GET /api/admin/backups", s.admin(s.adminBackups))
	s.mux.HandleFunc("GET /api/admin/backups/alerts/stale", s.admin(s.adminStale))
	s.mux.HandleFunc("GET /api/admin/backups/{containerId}", s.admin(s.adminBackup))
	s.mux.HandleFunc("GET /api/admin/backups/{containerId}/snapshots", s.admin(func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("containerId")
		snaps, err := o.Snapshots(r.Context(), id)
		if err != nil {
			s.opts.Log.Error().Err(err).Str("target", id).Msg("admin: list snapshots")
			WriteError(w, http.StatusBadGateway, "cannot list the object store")
			return
		}
		if snaps == nil {
			snaps = []Snapshot{}
		}
		WriteJSON(w, http.StatusOK, map[string]any{"containerId": id, "snapshots": snaps})
	}))
	s.mux.HandleFunc("GET /admin/health", s.admin(func(w http.ResponseWriter, r *http.Request) {
		WriteJSON(w, http.StatusOK, o.Health(r.Context()))
	}))
	s.mux.HandleFunc("POST /api/admin/backups/{containerId}/restore", s.admin(func(w http.ResponseWriter, r *http.Request) {
		var body ContainerRestoreRequest
		// Unknown fields are refused: a misspelt "targetNodeId" or "allowBinds" would restore
		// somewhere, or with an access, other than the one asked for.
		err := decodeStrict(r.Body, &body)
		if err == nil && body.RemotePath == "" {
			err = errors.New(`"remotePath" is required`)
		}
		if err != nil {
			WriteError(w, http.StatusBadRequest, `body must be {"remotePath": "...", "targetNodeId"?: "...", "allowBinds"?: [...], "allowHostAccess"?: bool}: `+err.Error())
			return
		}
		id, err := o.Restore(r.Context(), r.PathValue("containerId"), body)
		switch {
		case errors.Is(err, ErrForbidden):
			WriteError(w, http.StatusForbidden, "Forbidden: remotePath is not a backup of "+r.PathValue("containerId"))
		case err != nil:
			writeOpError(w, err)
		default:
			WriteJSON(w, http.StatusAccepted, map[string]any{"id": id, "status": "running", "containerId": r.PathValue("containerId"), "remotePath": body.RemotePath})
		}
	}))
	s.mux.HandleFunc("POST /api/admin/nodes/{node}/restore", s.admin(func(w http.ResponseWriter, r *http.Request) {
		var body NodeRestoreRequest
		// Unknown fields are refused: a misspelt "only" or "exclude" would widen the restore.
		if err := decodeStrict(r.Body, &body); err != nil && !errors.Is(err, io.EOF) {
			WriteError(w, http.StatusBadRequest, `body must be empty or {"parallel"?: N, "startParallel"?: N, "only"?: [...], "exclude"?: [...], "allowBinds"?: [...], "allowHostAccess"?: bool}: `+err.Error())
			return
		}
		if o.NodeRestore == nil {
			WriteError(w, http.StatusNotFound, "node restores are not available here")
			return
		}
		id, err := o.NodeRestore(r.Context(), r.PathValue("node"), body)
		switch {
		case err != nil:
			writeOpError(w, err)
		default:
			WriteJSON(w, http.StatusAccepted, map[string]any{"id": id, "status": "running", "node": r.PathValue("node")})
		}
	}))
	s.mux.HandleFunc("GET /api/admin/restores", s.admin(func(w http.ResponseWriter, r *http.Request) {
		list, err := s.opts.State.Restores(r.Context(), 100)
		if err != nil {
			WriteError(w, http.StatusInternalServerError, "cannot read restores")
			return
		}
		WriteJSON(w, http.StatusOK, map[string]any{"restores": list})
	}))
	cancel := func(w http.ResponseWriter, r *http.Request) {
		id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
		if err != nil {
			WriteError(w, http.StatusBadRequest, "invalid restore id")
			return
		}
		if o.CancelRestore == nil {
			WriteError(w, http.StatusNotFound, "restores cannot be cancelled here")
			return
		}
		err = o.CancelRestore(r.Context(), id)
		switch {
		case err != nil:
			writeOpError(w, err)
		default:
			WriteJSON(w, http.StatusAccepted, map[string]any{"id": id, "status": "cancelling"})
		}
	}
	s.mux.HandleFunc("DELETE /api/admin/restores/{id}", s.admin(cancel))
	s.mux.HandleFunc("POST /api/admin/restores/{id}/cancel", s.admin(cancel))
	s.mux.HandleFunc("GET /api/admin/restores/{id}", s.admin(func(w http.ResponseWriter, r *http.Request) {
		id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
		if err != nil {
			WriteError(w, http.StatusBadRequest, "invalid restore id")
			return
		}
		rec, err := s.opts.State.GetRestore(r.Context(), id)
		if errors.Is(err, state.ErrNotFound) {
			WriteError(w, http.StatusNotFound, "no restore "+r.PathValue("id"))
			return
		}
		if err != nil {
			WriteError(w, http.StatusInternalServerError, "cannot read restores")
			return
		}
		WriteJSON(w, http.StatusOK, rec)
	}))
	s.mux.HandleFunc("GET /api/alerts", s.admin(func(w http.ResponseWriter, r *http.Request) {
		WriteJSON(w, http.StatusOK, map[string]any{"alerts": o.Alerts()})
	}))
}

func (s *Server) backups(w http.ResponseWriter, r *http.Request) ([]state.BackupStatus, bool) {
	all, err := s.opts.State.ListBackups(r.Context(), time.Now(), s.opts.StaleAfter())
	if err != nil {
		s.opts.Log.Error().Err(err).Msg("admin: read backup status")
		WriteError(w, http.StatusInternalServerError, "cannot read backup status")
		return nil, false
	}
	if all == nil {
		all = []state.BackupStatus{}
	}
	return all, true
}

func (s *Server) adminBackups(w http.ResponseWriter, r *http.Request) {
	all, ok := s.backups(w, r)
	if !ok {
		return
	}
	stale := 0
	out := []state.BackupStatus{}
	for _, b := range all {
		if b.IsStale {
			stale++
		}
		if r.URL.Query().Get("stale") != "true" || b.IsStale {
			out = append(out, b)
		}
	}
	WriteJSON(w, http.StatusOK, map[string]any{"backups": out, "total": len(out), "staleCount": stale})
}

func (s *Server) adminStale(w http.ResponseWriter, r *http.Request) {
	all, ok := s.backups(w, r)
	if !ok {
		return
	}
	type alert struct {
		ContainerID       string     `json:"containerId"`
		NodeID            string     `json:"nodeId"`
		LastBackupAt      *time.Time `json:"lastBackupAt"`
		LastBackupSuccess bool       `json:"lastBackupSuccess"`
		LastBackupError   *string    `json:"lastBackupError"`
	}
	out := []alert{}
	for _, b := range all {
		if b.IsStale {
			out = append(out, alert{b.ContainerID, b.NodeID, b.LastBackupAt, b.LastBackupSuccess, b.LastBackupError})
		}
	}
	WriteJSON(w, http.StatusOK, map[string]any{"alerts": out, "count": len(out)})
}

// adminBackup is GET /api/admin/backups/{containerId}[?job=NAME]: the target's status row. A
// target backed up by several jobs (a container exported nightly and hot) has one row per job:
// ?job= picks that job's row; without it the row that needs attention is returned (a stale one
// before a fresh one, then the most recent backup), so one job's success never hides another's
// failure.
func (s *Server) adminBackup(w http.ResponseWriter, r *http.Request) {
	id, job := r.PathValue("containerId"), r.URL.Query().Get("job")
	all, ok := s.backups(w, r)
	if !ok {
		return
	}
	var rows []state.BackupStatus
	for _, b := range all {
		if b.ContainerID == id && (job == "" || b.Job == job) {
			rows = append(rows, b)
		}
	}
	if len(rows) == 0 {
		if job != "" {
			WriteError(w, http.StatusNotFound, "no backup status for "+id+" from job "+job)
			return
		}
		WriteError(w, http.StatusNotFound, "no backup status for "+id)
		return
	}
	WriteJSON(w, http.StatusOK, PickBackup(rows))
}

// PickBackup chooses the row shown for a target backed up by several jobs: a stale row first,
// then the one with the newest backup, then the most recently updated.
func PickBackup(rows []state.BackupStatus) state.BackupStatus {
	best := rows[0]
	for _, b := range rows[1:] {
		if b.IsStale != best.IsStale {
			if b.IsStale {
				best = b
			}
			continue
		}
		bt, ct := lastAt(b), lastAt(best)
		if bt.After(ct) || (bt.Equal(ct) && b.UpdatedAt.After(best.UpdatedAt)) {
			best = b
		}
	}
	return best
}

func lastAt(b state.BackupStatus) time.Time {
	if b.LastBackupAt == nil {
		return time.Time{}
	}
	return *b.LastBackupAt
}

// writeOpError answers an admin operation's error with its text: 404 for ErrNotFound, 400 for
// ErrBadRequest, 409 for ErrConflict, 500 for anything else.
func writeOpError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, ErrNotFound):
		WriteError(w, http.StatusNotFound, err.Error())
	case errors.Is(err, ErrBadRequest):
		WriteError(w, http.StatusBadRequest, err.Error())
	case errors.Is(err, ErrConflict):
		WriteError(w, http.StatusConflict, err.Error())
	default:
		WriteError(w, http.StatusInternalServerError, err.Error())
	}
}
