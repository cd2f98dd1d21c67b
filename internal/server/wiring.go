package server

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/gitdef"
	"github.com/runnel-ci/runnel/internal/repos"
	"github.com/runnel-ci/runnel/internal/scheduler"
	"github.com/runnel-ci/runnel/internal/secret"
	"github.com/runnel-ci/runnel/internal/store"
)

// sweep deletes what is older than the retention through del, at start and
// hourly, logging what it did under what. Every replica sweeps; the deletes
// are idempotent.
func sweep[N int | int64](ctx context.Context, what string, retention time.Duration, del func(context.Context, time.Time) (N, error), log *slog.Logger) error {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		n, err := del(ctx, time.Now().Add(-retention))
		switch {
		case err != nil && ctx.Err() == nil:
			log.Warn(what+" retention sweep failed", "err", err)
		case n > 0:
			log.Info("deleted old "+what, "count", n, "retention", retention)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// pipelineCredential opens the credential a pipeline names for its
// repository, if the pipeline's project may use it.
func pipelineCredential(r secret.Resolver, haveKeys bool) gitdef.CredentialOpener {
	return func(ctx context.Context, pipelineID, id string) (*runnel.Credential, error) {
		if !haveKeys {
			return nil, fmt.Errorf("credential %s: this server has no secrets key to open it with (see docs/security.md)", id)
		}
		m, err := r.Credentials(ctx, pipelineID, []string{id})
		if err != nil {
			return nil, fmt.Errorf("credential %s: %w", id, err)
		}
		c, ok := m[id]
		if !ok {
			return nil, fmt.Errorf("credential %s is not usable by pipeline %s (unknown, deleted, or limited to another project)", id, pipelineID)
		}
		return &c, nil
	}
}

// ensureAdminToken makes sure an admin token exists: the given value, or on
// the very first start a generated one, printed once. Only hashes are stored.
// The token belongs to the user "admin", a site admin, created with it when
// missing: --admin-token is also the way back in when no admin is left.
func ensureAdminToken(ctx context.Context, st store.Store, value string, stdout io.Writer) error {
	if value != "" {
		sum := sha256.Sum256([]byte(value))
		if _, err := st.TokenByHash(ctx, sum[:]); err == nil {
			return nil
		} else if !errors.Is(err, runnel.ErrNotFound) {
			return fmt.Errorf("look up admin token: %w", err)
		}
		u, err := ensureAdminUser(ctx, st)
		if err != nil {
			return err
		}
		err = st.CreateToken(ctx, &store.APIToken{ID: runnel.NewID("tok"), Name: "admin (--admin-token)", Subject: u.Login, Role: "admin", UserID: u.ID, Hash: sum[:], CreatedAt: time.Now().UTC()})
		if errors.Is(err, runnel.ErrConflict) {
			// Another replica starting at the same moment stored it first.
			if _, gerr := st.TokenByHash(ctx, sum[:]); gerr == nil {
				return nil
			}
		}
		return err
	}
	tokens, err := st.ListTokens(ctx)
	if err != nil {
		return fmt.Errorf("list tokens: %w", err)
	}
	for _, t := range tokens {
		if t.Role == "admin" {
			return nil
		}
	}
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return err
	}
	tok := "rnl_" + hex.EncodeToString(b)
	sum := sha256.Sum256([]byte(tok))
	u, err := ensureAdminUser(ctx, st)
	if err != nil {
		return err
	}
	if err := st.CreateToken(ctx, &store.APIToken{ID: runnel.NewID("tok"), Name: "admin (generated)", Subject: u.Login, Role: "admin", UserID: u.ID, Hash: sum[:], CreatedAt: time.Now().UTC()}); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Generated an admin API token (shown only this once; only its hash is stored):\n\n    %s\n\nUse it as: curl -H 'Authorization: Bearer %s' …\n\n", tok, tok)
	return nil
}

// ensureAdminUser returns the user "admin", creating it (a site admin) when
// missing, and enabling it as an admin again when it is not one: the admin
// token is the operator's.
func ensureAdminUser(ctx context.Context, st store.Store) (*store.User, error) {
	u, err := st.UserByLogin(ctx, "admin")
	if errors.Is(err, runnel.ErrNotFound) {
		u = &store.User{ID: runnel.NewID("usr"), Login: "admin", Name: "Administrator", Admin: true, CreatedAt: time.Now().UTC()}
		err = st.CreateUser(ctx, u)
		if errors.Is(err, runnel.ErrConflict) {
			// Another replica starting at the same moment stored it first.
			u, err = st.UserByLogin(ctx, "admin")
		}
	}
	if err != nil {
		return nil, fmt.Errorf("the admin user: %w", err)
	}
	if !u.Admin || u.Disabled {
		u.Admin, u.Disabled = true, false
		if err := st.UpdateUser(ctx, u); err != nil {
			return nil, fmt.Errorf("make the user admin a site admin again: %w", err)
		}
	}
	return u, nil
}

// embeddedAgentID is stable for a data dir, so after a crash the new process
// knows which running jobs were its own and died with it.
func embeddedAgentID(dataDir string) (string, error) {
	path := filepath.Join(dataDir, "embedded-agent-id")
	if b, err := os.ReadFile(path); err == nil && len(strings.TrimSpace(string(b))) > 0 {
		return strings.TrimSpace(string(b)), nil
	}
	id := runnel.NewID("agent")
	if err := os.WriteFile(path, []byte(id+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("embedded agent id: %w", err)
	}
	return id, nil
}

func dbKind(dsn string) string {
	if strings.HasPrefix(dsn, "postgres") {
		return "postgres"
	}
	return "sqlite " + dsn
}

// runControl adapts the scheduler to the API's RunControl, and tells the API
// the cron minimum interval the cron service applies.
type runControl struct {
	s       *scheduler.Scheduler
	cronMin time.Duration
}

// CronMinInterval is --cron-min-interval, which the API enforces when cron
// schedules are saved.
func (r runControl) CronMinInterval() time.Duration { return r.cronMin }

// JobNeeds lets the run detail show which jobs each job waits for.
func (r runControl) JobNeeds(ctx context.Context, run *store.Run) (map[string][]string, error) {
	return r.s.JobNeeds(ctx, run)
}

func (r runControl) Trigger(ctx context.Context, pipelineID string, req runnel.TriggerRequest) (*store.Run, bool, error) {
	return r.s.Trigger(ctx, pipelineID, req)
}

func (r runControl) Stop(ctx context.Context, runID, operator, reason string) (*store.Run, error) {
	return r.s.Stop(ctx, runID, operator, reason)
}

func (r runControl) Pause(ctx context.Context, runID, operator, reason string) (*store.Run, error) {
	return r.s.Pause(ctx, runID, operator, reason)
}

func (r runControl) Resume(ctx context.Context, runID, operator, reason string) (*store.Run, error) {
	return r.s.Resume(ctx, runID, operator, reason)
}

// pprofHandler serves Go's profiles under /debug/pprof/ (the server's
// --pprof-addr), on a mux of its own: nothing of it reaches the API's port.
func pprofHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// HookCheckInterval is how often the activated pipelines' webhooks are
// looked up on their forges (the first time a minute after the start).
const HookCheckInterval = 15 * time.Minute

// checkHooks runs repos.CheckHooks every HookCheckInterval until ctx ends.
func checkHooks(ctx context.Context, r *repos.Service, log *slog.Logger) error {
	if r == nil {
		return nil
	}
	t := time.NewTimer(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if _, err := r.CheckHooks(ctx); err != nil && ctx.Err() == nil {
			log.Warn("checking the pipelines' webhooks on their forges", "err", err)
		}
		t.Reset(HookCheckInterval)
	}
}
