package api

import (
	"fmt"
	"log/slog"
	"net/http"

	"github.com/runnel-ci/runnel/internal/apikit"
	"github.com/runnel-ci/runnel/internal/imageapi"
)

// ok sends a success envelope; detail nil leaves the field out.
func (s *Server) ok(w http.ResponseWriter, status int, detail any) {
	apikit.WriteOK(w, status, detail, s.now().Unix())
}

// fail sends err with its status, as an error envelope or, on the seed's
// image build paths, in that API's error style, logging what the client is
// not told.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	ae := apikit.MapError(err)
	msg := ae.Msg
	if ae.Status >= 500 {
		reqID := apikit.RequestID(r.Context())
		s.log.LogAttrs(r.Context(), slog.LevelError, "request failed",
			slog.String("request_id", reqID), slog.String("method", r.Method),
			slog.String("path", r.URL.Path), slog.Int("status", ae.Status), slog.Any("error", ae.Cause))
		if ae.Status == http.StatusInternalServerError {
			msg = fmt.Sprintf("internal error (request id %s): the server log has the details", reqID)
		}
	}
	for k, vs := range ae.Header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	if imageapi.SeedPath(r.URL.Path) {
		imageapi.WriteError(w, ae, msg)
		return
	}
	apikit.WriteEnvelopeError(w, r, ae, msg, s.now().Unix())
}
