package api

import (
	_ "embed"
	"net/http"
)

// openAPIDoc is the hand-written OpenAPI 3.1 document of this package's
// routes. TestOpenAPIMatchesRoutes keeps it honest: every route is documented
// with its method, every documented operation is served, and the responses
// the tests receive validate against the documented schemas.
//
//go:embed openapi.json
var openAPIDoc []byte

// openAPI serves the document as is (no envelope: tools read it directly).
func (s *Server) openAPI(w http.ResponseWriter, r *http.Request) error {
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write(openAPIDoc)
	return nil
}
