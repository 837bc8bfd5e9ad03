package httpapi

import (
	"net/http"

	"github.com/wopr-network/opsd/internal/coord"
)

// HandleFleet serves GET /api/fleet (admin token): every node's last heartbeat as the
// coordination database has it, or 503 while that database cannot be reached.
func (s *Server) HandleFleet(f *coord.Fleet) {
	s.Handle("GET /api/fleet", s.Admin(func(w http.ResponseWriter, r *http.Request) {
		v, err := f.View(r.Context())
		if err != nil {
			WriteError(w, http.StatusServiceUnavailable, "coordination database unavailable")
			return
		}
		WriteJSON(w, http.StatusOK, v)
	}))
}
