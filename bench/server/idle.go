package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// ---- idle memory: the server and its agents at rest ----
//
// A server on SQLite with its embedded agent, fresh data dir, and two remote
// agents connected to it: `runnel agent` (the all-in-one binary) and
// `runnel-agent` (the agent alone). After -idle at rest, each process's
// VmRSS, split into anonymous memory (heap, stacks: the process's own) and
// file-backed pages (its binary's code and data, shared with every process
// of the same binary and reclaimable by the kernel).

type memory struct{ rss, anon, file int64 }

func (m memory) String() string {
	return fmt.Sprintf("%s (anonymous %s, file-backed %s)", bold(mb(m.rss)), mb(m.anon), mb(m.file))
}

func processMemory(pid int) (memory, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return memory{}, err
	}
	var m memory
	for _, l := range strings.Split(string(data), "\n") {
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			continue
		}
		switch k {
		case "VmRSS":
			m.rss = kb * 1024
		case "RssAnon":
			m.anon = kb * 1024
		case "RssFile":
			m.file = kb * 1024
		}
	}
	if m.rss == 0 {
		return m, errors.New("no VmRSS in /proc/" + strconv.Itoa(pid) + "/status")
	}
	return m, nil
}

func (b *bench) idleMemory(ctx context.Context) ([]row, []row, error) {
	agentBin := b.cfg.agentBin
	if agentBin == "" {
		agentBin = filepath.Join(b.dir, "runnel-agent")
		build := exec.CommandContext(ctx, "go", "build", "-o", agentBin, "./cmd/runnel-agent")
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			return nil, nil, fmt.Errorf("build runnel-agent: %v\n%s", err, out)
		}
	}
	srv, err := b.startServer(ctx, "", 0)
	if err != nil {
		return nil, nil, err
	}
	defer srv.stop()
	var reg struct {
		Token string `json:"token"`
	}
	if err := srv.do(ctx, srv.client, http.MethodPost, "/api/v1/registration-tokens", []byte(`{}`), &reg); err != nil {
		return nil, nil, err
	}
	type agentProc struct {
		name string
		cmd  *exec.Cmd
	}
	var agents []agentProc
	defer func() {
		for _, a := range agents {
			_ = a.cmd.Process.Kill()
			_ = a.cmd.Wait()
		}
	}()
	for _, a := range []struct {
		name string
		argv []string
	}{
		{"`runnel agent`", []string{b.cfg.bin, "agent"}},
		{"`runnel-agent`", []string{agentBin}},
	} {
		wd := filepath.Join(b.dir, fmt.Sprintf("agent-%d", len(agents)))
		args := append(a.argv[1:], "--server", srv.grpc, "--token", reg.Token, "--workdir", wd, "--log-level", "error", "--capacity", "2")
		cmd := exec.CommandContext(ctx, a.argv[0], args...)
		if err := cmd.Start(); err != nil {
			return nil, nil, err
		}
		agents = append(agents, agentProc{a.name, cmd})
	}
	// Both registered and connected: the agent list says online.
	deadline := time.Now().Add(30 * time.Second)
	for {
		var list struct {
			Items []struct {
				Status string `json:"status"`
				Kind   string `json:"kind"`
			} `json:"items"`
		}
		if err := srv.do(ctx, srv.client, http.MethodGet, "/api/v1/agents", nil, &list); err != nil {
			return nil, nil, err
		}
		online := 0
		for _, it := range list.Items {
			if it.Status == "online" && it.Kind != "embedded" {
				online++
			}
		}
		if online == len(agents) {
			break
		}
		if time.Now().After(deadline) {
			return nil, nil, fmt.Errorf("%d of %d agents online after 30 s", online, len(agents))
		}
		if !sleep(ctx, 100*time.Millisecond) {
			return nil, nil, ctx.Err()
		}
	}
	if !sleep(ctx, b.cfg.idle) {
		return nil, nil, ctx.Err()
	}
	sm, err := processMemory(srv.cmd.Process.Pid)
	if err != nil {
		return nil, nil, err
	}
	rows := []row{{fmt.Sprintf("server RSS at rest (SQLite, embedded agent, 2 agents connected, %s idle)", b.cfg.idle), sm.String(), "≤ 30 MB"}}
	for _, a := range agents {
		m, err := processMemory(a.cmd.Process.Pid)
		if err != nil {
			return nil, nil, err
		}
		rows = append(rows, row{a.name + fmt.Sprintf(" RSS, connected, %s idle", b.cfg.idle), m.String(), "≤ 15 MB"})
	}
	return rows, nil, nil
}
