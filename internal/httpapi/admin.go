package httpapi

import (
	"context"
	"errors"
	"net/http"
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
}

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

func (s *Server) adminBackup(w http.ResponseWriter, r *http.Request) {
	b, err := s.opts.State.GetBackup(r.Context(), r.PathValue("containerId"), time.Now(), s.opts.StaleAfter())
	if errors.Is(err, state.ErrNotFound) {
		WriteError(w, http.StatusNotFound, "no backup status for "+r.PathValue("containerId"))
		return
	}
	if err != nil {
		WriteError(w, http.StatusInternalServerError, "cannot read backup status")
		return
	}
	WriteJSON(w, http.StatusOK, b)
}
