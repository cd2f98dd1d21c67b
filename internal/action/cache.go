package action

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/runnel-ci/runnel/internal/spec"
)

// Cache is actions/cache@v1: it restores workspace files saved by an earlier
// run of the pipeline under `key` (or, failing that, the newest cache whose
// key starts with one of `restoreKeys`), and saves them under `key` after
// the job when the job succeeded and the key was not an exact hit.
type Cache struct{}

// Info implements Action.
func (Cache) Info() spec.ActionInfo {
	return spec.ActionInfo{
		Uses:          "actions/cache@v1",
		Description:   "Restores files from the pipeline's cache and saves them after a successful job. Sets the outputs `hit` (true on an exact key match) and `matchedKey`.",
		Actions:       []string{"cache"},
		DefaultAction: "cache",
		Inputs: []spec.ActionInput{
			{Name: "key", Required: true, Description: "Cache key, e.g. go-${{ hashFiles('go.sum') }}. Entries never change: a key is saved once."},
			{Name: "restoreKeys", Description: "Key prefixes tried in order when key has no entry (a list, or a string of whitespace-separated prefixes); the newest matching entry is restored."},
			{Name: "paths", Required: true, Description: "Glob patterns relative to the workspace (a list, or one string of whitespace-separated patterns) of what to save; a matching directory takes everything under it."},
		},
	}
}

// Prepare implements Action; native actions are run, not prepared.
func (Cache) Prepare(Call) (Exec, error) { return Exec{}, errNative("actions/cache@v1") }

const maxCacheKey = 512

func checkKey(name, k string) error {
	if k == "" || len(k) > maxCacheKey || strings.ContainsFunc(k, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		return fmt.Errorf("args.%s: must be 1-%d characters without control characters, got %q", name, maxCacheKey, k)
	}
	return nil
}

// Run implements Native.
func (c Cache) Run(ctx context.Context, call Call, rt *Runtime) (map[string]string, error) {
	a, err := checkCall(c.Info(), call)
	if err != nil {
		return nil, err
	}
	key, err := a.str("key", "")
	if err != nil {
		return nil, err
	}
	key = strings.TrimSpace(key)
	if err := checkKey("key", key); err != nil {
		return nil, err
	}
	restore, err := a.stringList("restoreKeys", nil)
	if err != nil {
		return nil, err
	}
	for i, k := range restore {
		if err := checkKey(fmt.Sprintf("restoreKeys[%d]", i), k); err != nil {
			return nil, err
		}
	}
	raw, err := a.stringList("paths", nil)
	if err != nil {
		return nil, err
	}
	patterns, err := checkPatterns("paths", raw)
	if err != nil {
		return nil, err
	}
	if err := needStorage(c.Info().Uses, rt); err != nil {
		return nil, err
	}

	out := map[string]string{"hit": "false", "matchedKey": ""}
	found, rc, err := rt.Storage.RestoreCache(ctx, append([]string{key}, restore...))
	switch {
	case errors.Is(err, ErrCacheMiss):
		rt.Log("cache miss for key " + key)
	case err != nil:
		// A cache is an optimisation: the job goes on without it.
		rt.Log(fmt.Sprintf("warning: cannot read the cache: %v", err))
	default:
		n, uerr := unpack(ctx, rt.Workspace, ".", rc)
		rc.Close()
		if uerr != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			rt.Log(fmt.Sprintf("warning: cannot restore cache %s: %v", found, uerr))
			break
		}
		out["matchedKey"] = found
		if found == key {
			out["hit"] = "true"
			rt.Log(fmt.Sprintf("cache hit: restored %d file(s) from key %s", n, key))
		} else {
			rt.Log(fmt.Sprintf("restored %d file(s) from key %s (a restore key; %s will be saved after the job)", n, found, key))
		}
	}
	if out["hit"] == "true" {
		return out, nil
	}
	rt.After(func(ctx context.Context, succeeded bool) error {
		if !succeeded {
			rt.Log("not saving cache " + key + ": the job did not succeed")
			return nil
		}
		return saveCache(ctx, rt, key, raw, patterns)
	})
	return out, nil
}

func saveCache(ctx context.Context, rt *Runtime, key string, raw, patterns []string) error {
	saveCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	pr, pw := io.Pipe()
	type result struct {
		n   int
		err error
	}
	packed := make(chan result, 1)
	go func() {
		n, err := pack(saveCtx, rt.Workspace, patterns, pw)
		if err != nil {
			pw.CloseWithError(err)
			cancel()
		} else {
			pw.Close()
		}
		packed <- result{n, err}
	}()
	saveErr := rt.Storage.SaveCache(saveCtx, key, pr)
	pr.CloseWithError(errors.New("save ended"))
	p := <-packed
	switch {
	case errors.Is(p.err, errNoMatch):
		rt.Log(fmt.Sprintf("not saving cache %s: no file matches %v", key, raw))
		return nil
	case p.err != nil:
		return fmt.Errorf("pack cache %s: %w", key, p.err)
	case errors.Is(saveErr, ErrCacheExists):
		rt.Log("cache " + key + " was saved meanwhile by another job; keeping that one")
		return nil
	case saveErr != nil:
		return fmt.Errorf("save cache %s: %w", key, saveErr)
	}
	rt.Log("saved cache " + key + ": " + strconv.Itoa(p.n) + " file(s)")
	return nil
}
