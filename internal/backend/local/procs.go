package local

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Why no PR_SET_CHILD_SUBREAPER: it is an attribute of the whole runnel
// process, after which every orphaned descendant (of any backend, of git
// invocations, …) becomes runnel's child and must be reaped. Reaping with
// wait4(-1) would steal exit statuses from exec.Cmd.Wait calls in other
// goroutines. The /proc scan below already finds processes that escaped the
// process group, so the subreaper would buy nothing; and when runnel does end up
// the parent of a job's orphans (as PID 1 of a container, or under someone
// else's subreaper), killJobProcesses reaps exactly those, by PID.

// proc identifies a process; start (clock ticks since boot) guards against PID
// reuse between a scan and a later action on the PID.
type proc struct {
	pid, ppid int
	start     uint64
	zombie    bool
}

// pollInterval is how often killJobProcesses checks whether processes are gone.
const pollInterval = 10 * time.Millisecond

// pidWindow is the PIDs a job's processes can have: those allocated after
// its SetupJob (above after), as long as the PID counter did not wrap
// meanwhile. The zero value means every PID.
type pidWindow struct {
	after int    // the namespace's last PID when the job was set up
	forks uint64 // processes and threads created on the host until then
	ok    bool
}

// maxNarrowedScan bounds the forks a narrowed scan trusts and the PIDs it
// opens one by one; a busier job lists /proc instead.
const maxNarrowedScan = 256

// newPIDWindow reads where PIDs stand now; its ok is false when that cannot
// be known: /proc/sys/kernel/ns_last_pid or the fork count of /proc/stat
// unreadable, or /proc not the /proc of runnel's own PID namespace (its PIDs
// would not compare with the counter).
func newPIDWindow(self int) pidWindow {
	if link, err := os.Readlink("/proc/self"); err != nil || link != strconv.Itoa(self) {
		return pidWindow{}
	}
	data, err := os.ReadFile("/proc/sys/kernel/ns_last_pid")
	if err != nil {
		return pidWindow{}
	}
	last, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || last <= 0 {
		return pidWindow{}
	}
	forks, ok := forkCount()
	return pidWindow{after: last, forks: forks, ok: ok}
}

// forkCount is the "processes" line of /proc/stat: forks since boot.
func forkCount() (uint64, bool) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, false
	}
	for line := range strings.Lines(string(data)) {
		if v, ok := strings.CutPrefix(line, "processes "); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}

// candidates returns the PIDs to look at for processes of a job whose
// window is w, or all=true when every process must be looked at. The window
// holds every PID of the job while the counter has not wrapped since w was
// taken. It cannot have with at most maxNarrowedScan forks on the whole host
// since then: the counter moves one PID per fork, plus the PIDs in use it
// skips, and going around needs far more than that. Busier hosts and longer
// jobs (more forks), an unknown window, or a counter found below its start
// list every process.
func (b *Backend) candidates(w pidWindow) (pids []int, all bool) {
	if !w.ok {
		return nil, true
	}
	now := newPIDWindow(b.self)
	if !now.ok || now.after < w.after || now.forks < w.forks ||
		now.forks-w.forks > maxNarrowedScan || now.after-w.after > 4*maxNarrowedScan {
		return nil, true
	}
	for pid := w.after + 1; pid <= now.after; pid++ {
		if pid != b.self {
			pids = append(pids, pid)
		}
	}
	return pids, false
}

// killJobProcesses stops every process whose environment carries the marker
// of the job directory dir: SIGTERM, up to destroyGrace for them to exit, then SIGKILL until none
// is left. Processes that cleared their environment, or run as another user
// whose environ we cannot read, are not found. Only PIDs allocated inside
// the window w are looked at, when it is known and the counter has not
// wrapped: a job's processes cannot have others, and a short job then costs
// a handful of reads instead of one per process on the host.
func (b *Backend) killJobProcesses(dir string, w pidWindow) error {
	marker := []byte(markerVar + "=" + dir)
	seen := map[int]proc{} // everything signalled, to reap those that are ours
	scan := func() ([]proc, error) {
		pids, all := b.candidates(w)
		if all {
			return b.scan(marker)
		}
		return b.scanPIDs(marker, pids), nil
	}

	live, err := scan()
	if err != nil {
		return err
	}
	if len(live) == 0 {
		return nil
	}
	b.log.Debug("stopping leftover job processes", "job", dir, "count", len(live))
	signal := func(ps []proc, sig syscall.Signal) {
		for _, p := range ps {
			seen[p.pid] = p
			if err := syscall.Kill(p.pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
				b.log.Warn("signal leftover job process failed", "job", dir, "pid", p.pid, "signal", sig, "err", err)
			}
		}
	}

	signal(live, syscall.SIGTERM)
	deadline := time.Now().Add(destroyGrace)
	for len(live) > 0 && time.Now().Before(deadline) {
		time.Sleep(pollInterval)
		b.reap(seen)
		if live, err = scan(); err != nil {
			return err
		}
		// Newcomers (forked by a dying parent) get the same SIGTERM first.
		var fresh []proc
		for _, p := range live {
			if _, ok := seen[p.pid]; !ok {
				fresh = append(fresh, p)
			}
		}
		signal(fresh, syscall.SIGTERM)
	}

	// SIGKILL until nothing carries the marker; a bounded number of rounds,
	// since a process of ours racing to fork could otherwise keep us here.
	for round := 0; len(live) > 0 && round < 200; round++ {
		signal(live, syscall.SIGKILL)
		time.Sleep(pollInterval)
		b.reap(seen)
		if live, err = scan(); err != nil {
			return err
		}
	}
	b.reap(seen)
	if len(live) > 0 {
		return fmt.Errorf("%d processes of the job survived SIGKILL", len(live))
	}
	return nil
}

// reap collects the exit status of seen processes that are zombies and our
// children: orphans of the job that were reparented to runnel. Only these PIDs
// are waited for, so no other goroutine's child is touched.
func (b *Backend) reap(seen map[int]proc) {
	for pid, p := range seen {
		now, err := readStat(pid)
		if err != nil || now.start != p.start {
			delete(seen, pid) // gone, or the PID now names another process
			continue
		}
		if now.zombie && now.ppid == b.self {
			var ws syscall.WaitStatus
			_, _ = syscall.Wait4(pid, &ws, syscall.WNOHANG, nil)
			delete(seen, pid)
		}
	}
}

// scan lists the live (non-zombie) processes whose initial environment contains
// marker as a whole entry.
func (b *Backend) scan(marker []byte) ([]proc, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	pids := make([]int, 0, len(entries))
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == b.self {
			continue
		}
		pids = append(pids, pid)
	}
	return b.scanPIDs(marker, pids), nil
}

// scanPIDs is scan over the given PIDs only.
//
// A process in the middle of execve shows an empty environment for an
// instant (the new image's is not set up yet): such a process is read again
// a few times, so a job's process caught exec'ing (a daemon's `exec sleep`)
// is not missed by the one scan that finds nothing. Kernel threads (children
// of kthreadd, PID 2) have no environment and are not waited for.
func (b *Backend) scanPIDs(marker []byte, pids []int) []proc {
	var found []proc
	var unsure []int
	for _, pid := range pids {
		env, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
		if err != nil {
			continue // gone, or not ours to read
		}
		if len(env) == 0 {
			if p, err := readStat(pid); err == nil && !p.zombie && pid != 2 && p.ppid != 2 {
				unsure = append(unsure, pid)
			}
			continue
		}
		if !hasEntry(env, marker) {
			continue // not of this job
		}
		p, err := readStat(pid)
		if err != nil || p.zombie {
			continue
		}
		found = append(found, p)
	}
	for try := 0; len(unsure) > 0 && try < 5; try++ {
		time.Sleep(2 * time.Millisecond)
		var again []int
		for _, pid := range unsure {
			env, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
			switch {
			case err != nil:
			case len(env) == 0:
				again = append(again, pid)
			case hasEntry(env, marker):
				if p, err := readStat(pid); err == nil && !p.zombie {
					found = append(found, p)
				}
			}
		}
		unsure = again
	}
	return found
}

// hasEntry reports whether the NUL-separated environ block contains entry.
func hasEntry(environ, entry []byte) bool {
	for len(environ) > 0 {
		var e []byte
		e, environ, _ = bytes.Cut(environ, []byte{0})
		if bytes.Equal(e, entry) {
			return true
		}
	}
	return false
}

// readStat reads a process's state, parent and start time from
// /proc/<pid>/stat.
func readStat(pid int) (proc, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return proc{}, err
	}
	// "pid (comm) state ppid …": comm may contain spaces and parentheses, so
	// parse from the last ')'.
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return proc{}, fmt.Errorf("parse /proc/%d/stat: no ')'", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return proc{}, fmt.Errorf("parse /proc/%d/stat: %d fields", pid, len(f))
	}
	ppid, err1 := strconv.Atoi(f[1])
	start, err2 := strconv.ParseUint(f[19], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return proc{}, fmt.Errorf("parse /proc/%d/stat: %w", pid, err)
	}
	return proc{pid: pid, ppid: ppid, start: start, zombie: f[0] == "Z" || f[0] == "X"}, nil
}

// CleanupStale removes what an earlier process of this backend left behind
// after it died without DestroyJob (kill -9, power loss): every process whose
// job marker points into Root is stopped, and every job directory under Root
// is removed. Call it once at startup, before any job runs on this Root.
func (b *Backend) CleanupStale(ctx context.Context) error {
	entries, err := os.ReadDir(b.root)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("clean up %s: %w", b.root, err)
	}
	var errs []error
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		dir := filepath.Join(b.root, e.Name())
		// Twice, a moment apart: a process caught between fork and exec
		// can show an empty environment in /proc for an instant, and
		// would be missed by a single scan.
		if err := b.killJobProcesses(dir, pidWindow{}); err != nil {
			errs = append(errs, err)
		}
		time.Sleep(50 * time.Millisecond)
		if err := b.killJobProcesses(dir, pidWindow{}); err != nil {
			errs = append(errs, err)
		}
		if err := removeTree(dir); err != nil {
			errs = append(errs, fmt.Errorf("remove %s: %w", dir, err))
		} else {
			b.log.Info("removed a job left by an earlier run of this backend", "dir", dir)
		}
	}
	return errors.Join(errs...)
}
