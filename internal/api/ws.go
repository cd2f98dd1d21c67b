package api

import (
	"net/http"
	"slices"
	"strings"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/apikit"
	"github.com/runnel-ci/runnel/internal/wsgateway"
)

// GET /api/v1/ws: the handshake is authenticated here (a browser sends its
// token as the subprotocol bearer.<token>, since it cannot set a header);
// the connection is the gateway's (package wsgateway).

// websocketHandler authenticates, upgrades and serves one connection.
func (s *Server) websocketHandler(w http.ResponseWriter, r *http.Request) error {
	offered := wsgateway.Protocols(r)
	if r.Header.Get("Authorization") == "" {
		for _, p := range offered {
			if tok, ok := strings.CutPrefix(p, "bearer."); ok {
				r.Header.Set("Authorization", "Bearer "+tok)
			}
		}
		if r.Header.Get("Authorization") != "" && !slices.Contains(offered, wsgateway.Protocol) {
			return apikit.Errorf(http.StatusBadRequest, "header Sec-WebSocket-Protocol: a token sent as bearer.<token> needs the protocol %q too", wsgateway.Protocol)
		}
	}
	p, err := s.authenticate(r)
	if err != nil {
		return err
	}
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		return &apikit.Error{Status: http.StatusUpgradeRequired, Header: http.Header{"Upgrade": {"websocket"}},
			Msg: "this endpoint is a WebSocket: send a WebSocket handshake (Upgrade: websocket)"}
	}
	if s.gateway == nil {
		return apikit.Errorf(http.StatusServiceUnavailable, "live events are not available on this server")
	}
	s.gateway.Serve(w, r.WithContext(runnel.WithPrincipal(r.Context(), p)), p.Subject, p.TokenID)
	return nil
}
