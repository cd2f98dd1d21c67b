package accountapi

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/runnel-ci/runnel/internal/apikit"
	"github.com/runnel-ci/runnel/internal/store"
	"github.com/runnel-ci/runnel/internal/wire"
)

// Record records a change made through the API (it is apikit.Mux.Audit). The entry
// is written after the change, in its own transaction; a failure to write it
// is logged as an error and does not undo the change.
func (a *API) Record(r *http.Request, rt apikit.Route, p apikit.Principal, status int, location string) {
	resource := location
	if resource == "" {
		resource = r.URL.Path
	}
	addr := r.RemoteAddr
	if host, _, err := net.SplitHostPort(addr); err == nil {
		addr = host
	}
	e := &store.AuditEntry{Time: a.Now().UTC(), Actor: p.Subject, ActorID: p.UserID, TokenID: p.TokenID,
		Action: rt.Method + " " + rt.Path, Resource: resource, Status: status, RemoteAddr: addr,
		RequestID: apikit.RequestID(r.Context())}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 10*time.Second)
	defer cancel()
	if err := a.Audit.AppendAudit(ctx, e); err != nil {
		a.Log.LogAttrs(ctx, slog.LevelError, "cannot write an audit entry", slog.String("action", e.Action),
			slog.String("resource", e.Resource), slog.String("actor", e.Actor), slog.Any("error", err))
	}
}

// auditJSON is an audit entry as the API shows it.
type auditJSON struct {
	ID         int64  `json:"id"`
	Time       string `json:"time"`
	Actor      string `json:"actor"`
	ActorID    string `json:"actorId"`
	TokenID    string `json:"tokenId"`
	Action     string `json:"action"`
	Resource   string `json:"resource"`
	Status     int    `json:"status"`
	RemoteAddr string `json:"remoteAddr"`
	RequestID  string `json:"requestId"`
}

func toAuditJSON(e *store.AuditEntry) auditJSON {
	return auditJSON{ID: e.ID, Time: wire.Time(e.Time), Actor: e.Actor, ActorID: e.ActorID, TokenID: e.TokenID,
		Action: e.Action, Resource: e.Resource, Status: e.Status, RemoteAddr: e.RemoteAddr, RequestID: e.RequestID}
}

// listAudit is GET /api/v1/audit (admin only): newest first, filtered by
// actor, action, resource (a path prefix) and a time window, paged.
func (a *API) listAudit(w http.ResponseWriter, r *http.Request) error {
	if !apikit.PrincipalFrom(r.Context()).Admin() {
		return apikit.Errorf(http.StatusForbidden, "reading the audit log needs an admin token (a site admin's, with the admin scope)")
	}
	q, err := apikit.ParseQuery(r.URL.RawQuery, "actor", "action", "resource", "since", "until", "page", "pageSize")
	if err != nil {
		return err
	}
	pg, err := q.Pagination()
	if err != nil {
		return err
	}
	f := store.AuditFilter{Actor: q.Str("actor"), Action: q.Str("action"), Resource: q.Str("resource"), Offset: pg.Offset(), Limit: pg.Size}
	for name, dst := range map[string]**time.Time{"since": &f.Since, "until": &f.Until} {
		if !q.Has(name) {
			continue
		}
		t, err := time.Parse(time.RFC3339, q.Str(name))
		if err != nil {
			return apikit.Errorf(http.StatusBadRequest, "query parameter %s: %q is not an RFC 3339 time such as 2026-12-31T23:59:59Z", name, q.Str(name))
		}
		*dst = &t
	}
	entries, total, err := a.Audit.ListAudit(r.Context(), f)
	if err != nil {
		return err
	}
	out := apikit.List[auditJSON]{Items: make([]auditJSON, 0, len(entries)), Total: total, Page: pg.Number, PageSize: pg.Size}
	for _, e := range entries {
		out.Items = append(out.Items, toAuditJSON(e))
	}
	a.ok(w, http.StatusOK, out)
	return nil
}
