// Package docker is the backend that runs a job's steps in containers of the
// Docker Engine, through its API (the Moby Go client; no docker CLI).
//
// One job attempt gets a volume (its workspace, mounted at /runnel/workspace
// in every container of the job), a bridge network of its own, and one
// container per service, reachable from the steps by the service's name. Each
// step runs in a container of its own: a run step in the job's image, its
// script copied into the container as a file (never on a command line, where
// `docker inspect` would show it), a plugin step (uses: docker://IMAGE) in its
// image with the image's own entrypoint and command. Step containers run
// under an init process (docker-init), so that SIGTERM reaches the script
// as it would on the local backend.
//
// Everything the backend creates carries the labels io.runnel.managed=true,
// io.runnel.owner (a stable id of this backend instance: a hash of the host
// name and its root directory, so that two agents on one host never touch each
// other's things) and io.runnel.job (the job's backend ID). DestroyJob removes
// what carries the job's labels; CleanupStale removes everything of the owner.
//
// The client connects lazily: creating a Backend never talks to Docker, so a
// process can hold one on a machine without Docker and only the jobs that need
// containers fail, with an error that says Docker is unreachable.
package docker

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"

	"github.com/runnel-ci/runnel/internal/backend"
)

// Labels on everything the backend creates.
const (
	LabelManaged = "io.runnel.managed"
	LabelOwner   = "io.runnel.owner"
	LabelJob     = "io.runnel.job"
	// LabelRole is "step", "service", "workspace" or "network".
	LabelRole = "io.runnel.role"
)

// Paths inside the containers.
const (
	// WorkspaceDir is where the job's workspace volume is mounted.
	WorkspaceDir = "/runnel/workspace"
	// stepDir holds a step's script and its $RUNNEL_OUTPUT file. It is copied
	// into each step container before it starts, world-writable so that
	// images running as another user can still write their outputs.
	stepDir    = "/runnel/step"
	scriptPath = stepDir + "/script"
	outputPath = stepDir + "/output"
)

// Defaults for the zero values of Options.
const (
	defaultGracePeriod = 10 * time.Second
	// pingTimeout bounds the reachability check of SetupJob.
	pingTimeout = 15 * time.Second
	// outputDrain is how long RunStep keeps copying output after the step's
	// container exited; the stream normally ends right away.
	outputDrain = 2 * time.Second
)

// ErrUnreachable is wrapped by the errors of a backend that cannot reach
// Docker.
var ErrUnreachable = errors.New("Docker is unreachable") //nolint:staticcheck // a proper noun

// validID is the syntax of job and step IDs (see backend.Job.ID).
var validID = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9._-]+$`) })

var _ backend.Backend = (*Backend)(nil)

// Options configures a Backend.
type Options struct {
	// Root identifies this backend instance: the owner label is derived from
	// its absolute path and the host name. It is not written to; use the
	// directory the agent keeps its workspaces in. Required.
	Root string
	// Owner overrides the owner label derived from Root (tests).
	Owner string
	// Host is the Docker daemon's address (unix:///var/run/docker.sock,
	// tcp://host:2376, …); "" means DOCKER_HOST, or the platform's default.
	// DOCKER_API_VERSION, DOCKER_CERT_PATH and DOCKER_TLS_VERIFY apply too.
	Host string
	// GracePeriod is the delay between SIGTERM and SIGKILL when a step is
	// cancelled or times out; 0 means 10s.
	GracePeriod time.Duration
	// Logger receives diagnostics; nil discards them.
	Logger *slog.Logger
}

// Backend runs jobs in Docker containers. It implements backend.Backend and is
// safe for concurrent use by several jobs.
type Backend struct {
	owner string
	host  string
	grace time.Duration
	log   *slog.Logger

	connMu sync.Mutex
	cli    *client.Client
	cliErr error

	mu   sync.Mutex
	jobs map[string]*jobState
}

// jobState is what the backend remembers about a set-up job.
type jobState struct {
	network string // name of the job's network
	volume  string // name of the workspace volume
	// ensured lists images already made present for this job, so that a
	// plugin image is not pulled again under pullPolicy always.
	ensured map[string]bool
	// files is the never-started container through which ArchiveWorkspace
	// and ExtractToWorkspace reach the volume ("" until first needed).
	files string
	// image is the image that container is made from.
	image string
}

// New validates opts and returns a Backend. It does not contact Docker.
func New(opts Options) (*Backend, error) {
	if opts.Root == "" && opts.Owner == "" {
		return nil, errors.New("new docker backend: Options.Root is required")
	}
	if opts.GracePeriod < 0 {
		return nil, errors.New("new docker backend: GracePeriod must not be negative")
	}
	owner := opts.Owner
	if owner == "" {
		root, err := filepath.Abs(opts.Root)
		if err != nil {
			return nil, fmt.Errorf("new docker backend: root %q: %w", opts.Root, err)
		}
		host, _ := os.Hostname()
		sum := sha256.Sum256([]byte(host + "\x00" + root))
		owner = hex.EncodeToString(sum[:8])
	}
	if !validID().MatchString(owner) {
		return nil, fmt.Errorf("new docker backend: invalid owner %q", owner)
	}
	b := &Backend{owner: owner, host: opts.Host, grace: opts.GracePeriod, log: opts.Logger, jobs: map[string]*jobState{}}
	if b.grace == 0 {
		b.grace = defaultGracePeriod
	}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	return b, nil
}

// Owner is the value of the io.runnel.owner label on what this backend creates.
func (b *Backend) Owner() string { return b.owner }

// Close releases the client's idle connections.
func (b *Backend) Close() error {
	b.connMu.Lock()
	defer b.connMu.Unlock()
	if b.cli != nil {
		return b.cli.Close()
	}
	return nil
}

// client returns the Docker client, creating it on first use.
func (b *Backend) client() (*client.Client, error) {
	b.connMu.Lock()
	defer b.connMu.Unlock()
	if b.cli == nil && b.cliErr == nil {
		opts := []client.Opt{client.FromEnv}
		if b.host != "" {
			opts = append(opts, client.WithHost(b.host))
		}
		b.cli, b.cliErr = client.New(opts...)
		if b.cliErr != nil {
			b.cliErr = fmt.Errorf("%w: %v", ErrUnreachable, b.cliErr)
		}
	}
	return b.cli, b.cliErr
}

// daemonHost names the daemon for error messages.
func (b *Backend) daemonHost() string {
	if b.host != "" {
		return b.host
	}
	if h := os.Getenv(client.EnvOverrideHost); h != "" {
		return h
	}
	return client.DefaultDockerHost
}

// Ping checks that Docker answers; the error wraps ErrUnreachable and names
// the daemon's address.
func (b *Backend) Ping(ctx context.Context) error {
	cli, err := b.client()
	if err != nil {
		return err
	}
	pctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	if _, err := cli.Ping(pctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("%w at %s (DOCKER_HOST): %v", ErrUnreachable, b.daemonHost(), err)
	}
	return nil
}

func (b *Backend) labels(jobID, role string) map[string]string {
	l := map[string]string{LabelManaged: "true", LabelOwner: b.owner, LabelRole: role}
	if jobID != "" {
		l[LabelJob] = jobID
	}
	return l
}

// filters selects what this backend created, for one job when jobID is set.
func (b *Backend) filters(jobID string) client.Filters {
	f := client.Filters{}.Add("label", LabelManaged+"=true", LabelOwner+"="+b.owner)
	if jobID != "" {
		f.Add("label", LabelJob+"="+jobID)
	}
	return f
}

// name is the Docker name of something of a job: runnel-<owner>-<job>[-<suffix>].
func (b *Backend) name(jobID, suffix string) string {
	n := "runnel-" + b.owner + "-" + jobID
	if suffix != "" {
		n += "-" + suffix
	}
	return n
}

func checkID(kind, id string) error {
	if !validID().MatchString(id) || id == "." || id == ".." {
		return fmt.Errorf("invalid %s ID %q: want [A-Za-z0-9._-]+", kind, id)
	}
	return nil
}

// SetupJob checks that Docker answers, makes the job's images present
// according to its pull policy, creates the workspace volume and the network,
// and starts the services. Whatever it created before a failure is removed by
// DestroyJob.
func (b *Backend) SetupJob(ctx context.Context, job *backend.Job) (*backend.Workspace, error) {
	fail := func(err error) (*backend.Workspace, error) {
		return nil, fmt.Errorf("setup job %s: %w", job.Name, err)
	}
	if err := checkID("job", job.ID); err != nil {
		return fail(err)
	}
	if err := ctx.Err(); err != nil {
		return fail(err)
	}
	policy, err := pullPolicy(job.PullPolicy)
	if err != nil {
		return fail(err)
	}
	if err := b.Ping(ctx); err != nil {
		what := "containers"
		if job.Image != "" {
			what = fmt.Sprintf("image %q", job.Image)
		} else if len(job.Services) > 0 {
			what = fmt.Sprintf("the image %q of service %s", job.Services[0].Image, job.Services[0].Name)
		} else if len(job.Plugins) > 0 {
			what = fmt.Sprintf("the plugin image %q", job.Plugins[0])
		}
		return fail(fmt.Errorf("the job needs Docker for %s: %w", what, err))
	}
	cli, _ := b.client()
	st := &jobState{network: b.name(job.ID, ""), volume: b.name(job.ID, "workspace"), ensured: map[string]bool{}}
	switch {
	case job.Image != "":
		st.image = job.Image
	case len(job.Plugins) > 0:
		st.image = job.Plugins[0]
	case len(job.Services) > 0:
		st.image = job.Services[0].Image
	}
	b.mu.Lock()
	if _, dup := b.jobs[job.ID]; dup {
		b.mu.Unlock()
		return fail(fmt.Errorf("job %s is already set up", job.ID))
	}
	b.jobs[job.ID] = st
	b.mu.Unlock()

	images := []string{}
	add := func(img string) {
		if img != "" && !contains(images, img) {
			images = append(images, img)
		}
	}
	add(job.Image)
	for _, s := range job.Services {
		add(s.Image)
	}
	for _, p := range job.Plugins {
		add(p)
	}
	for _, img := range images {
		if err := b.ensureImage(ctx, cli, img, policy); err != nil {
			return fail(err)
		}
		st.ensured[img] = true
	}

	if _, err := cli.VolumeCreate(ctx, client.VolumeCreateOptions{Name: st.volume, Labels: b.labels(job.ID, "workspace")}); err != nil {
		return fail(fmt.Errorf("create workspace volume: %w", err))
	}
	if _, err := cli.NetworkCreate(ctx, st.network, client.NetworkCreateOptions{Driver: "bridge", Labels: b.labels(job.ID, "network")}); err != nil {
		return fail(fmt.Errorf("create network: %w", err))
	}
	for i := range job.Services {
		if err := b.startService(ctx, cli, job, st, &job.Services[i]); err != nil {
			return fail(err)
		}
	}
	b.log.Debug("job set up", "job", job.ID, "image", job.Image, "services", len(job.Services))
	return &backend.Workspace{Path: WorkspaceDir}, nil
}

func (b *Backend) startService(ctx context.Context, cli *client.Client, job *backend.Job, st *jobState, s *backend.Service) error {
	if err := checkServiceName(s.Name); err != nil {
		return err
	}
	env, err := containerEnv(s.Env, nil)
	if err != nil {
		return fmt.Errorf("service %s: %w", s.Name, err)
	}
	cfg := &container.Config{
		Image:    s.Image,
		Env:      env,
		Hostname: s.Name,
		Labels:   b.labels(job.ID, "service"),
	}
	if len(s.Entrypoint) > 0 {
		cfg.Entrypoint = s.Entrypoint
	}
	if len(s.Command) > 0 {
		cfg.Cmd = s.Command
	}
	init := true
	res, err := cli.ContainerCreate(ctx, client.ContainerCreateOptions{
		Name:   b.name(job.ID, "svc-"+s.Name),
		Config: cfg,
		HostConfig: &container.HostConfig{
			Init:        &init,
			NetworkMode: container.NetworkMode(st.network),
			Mounts:      []mount.Mount{{Type: mount.TypeVolume, Source: st.volume, Target: WorkspaceDir}},
		},
		NetworkingConfig: &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{
			st.network: {Aliases: []string{s.Name}},
		}},
	})
	if err != nil {
		return fmt.Errorf("create service %s (image %q): %w", s.Name, s.Image, err)
	}
	if _, err := cli.ContainerStart(ctx, res.ID, client.ContainerStartOptions{}); err != nil {
		return fmt.Errorf("start service %s (image %q): %w", s.Name, s.Image, err)
	}
	b.log.Debug("service started", "job", job.ID, "service", s.Name, "container", res.ID)
	return nil
}

var serviceNameRe = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`) })

func checkServiceName(name string) error {
	if !serviceNameRe().MatchString(name) {
		return fmt.Errorf("invalid service name %q: lower-case letters, digits and '-'", name)
	}
	return nil
}

func pullPolicy(p string) (string, error) {
	switch p {
	case "":
		return backend.PullIfNotPresent, nil
	case backend.PullIfNotPresent, backend.PullAlways, backend.PullNever:
		return p, nil
	}
	return "", fmt.Errorf("invalid pull policy %q: want %s, %s or %s", p, backend.PullNever, backend.PullIfNotPresent, backend.PullAlways)
}

// ensureImage makes img present according to policy.
func (b *Backend) ensureImage(ctx context.Context, cli *client.Client, img, policy string) error {
	if policy != backend.PullAlways {
		_, err := cli.ImageInspect(ctx, img)
		if err == nil {
			return nil
		}
		if !cerrdefs.IsNotFound(err) {
			return fmt.Errorf("inspect image %q: %w", img, err)
		}
		if policy == backend.PullNever {
			return fmt.Errorf("image %q is not present and pullPolicy is %s", img, policy)
		}
	}
	b.log.Info("pulling image", "image", img, "pullPolicy", policy)
	resp, err := cli.ImagePull(ctx, img, client.ImagePullOptions{})
	if err == nil {
		err = resp.Wait(ctx)
		resp.Close()
	}
	if err != nil {
		return fmt.Errorf("pull image %q (pullPolicy %s): %w", img, policy, err)
	}
	return nil
}

// RunStep runs one step in a container of its own; see backend.Backend.
func (b *Backend) RunStep(ctx context.Context, job *backend.Job, step *backend.Step, out io.Writer) (backend.Result, error) {
	fail := func(err error) (backend.Result, error) {
		return backend.Result{ExitCode: -1}, fmt.Errorf("run step %s: %w", step.ID, err)
	}
	if err := checkID("job", job.ID); err != nil {
		return fail(err)
	}
	if err := checkID("step", step.ID); err != nil {
		return fail(err)
	}
	if out == nil {
		out = io.Discard
	}
	b.mu.Lock()
	st := b.jobs[job.ID]
	b.mu.Unlock()
	if st == nil {
		return fail(fmt.Errorf("job %s is not set up", job.ID))
	}
	cli, err := b.client()
	if err != nil {
		return fail(err)
	}
	image := job.Image
	plugin := step.Image != ""
	if plugin {
		image = step.Image
		if !st.ensured[image] {
			policy, err := pullPolicy(job.PullPolicy)
			if err != nil {
				return fail(err)
			}
			if err := b.ensureImage(ctx, cli, image, policy); err != nil {
				return fail(err)
			}
			st.ensured[image] = true // steps of a job never overlap
		}
	} else if image == "" {
		return fail(fmt.Errorf("step %q is a run step, but job %s has no image: the docker backend runs scripts in the job's image (set image, or run the job on the local backend)", step.Name, job.Name))
	}

	wd, err := workingDir(step.WorkingDir)
	if err != nil {
		return fail(err)
	}
	env, err := containerEnv(step.Env, map[string]string{
		"RUNNEL_WORKSPACE": WorkspaceDir,
		"RUNNEL_OUTPUT":    outputPath,
	})
	if err != nil {
		return fail(err)
	}
	cfg := &container.Config{
		Image:        image,
		Env:          env,
		WorkingDir:   wd,
		Labels:       b.labels(job.ID, "step"),
		AttachStdout: true,
		AttachStderr: true,
	}
	if !plugin {
		cfg.Entrypoint = interpreter(step.Shell, scriptPath)
		if cfg.Entrypoint == nil {
			return fail(fmt.Errorf("shell %q: empty command template", step.Shell))
		}
	}
	init := true
	name := b.name(job.ID, step.ID)
	opts := client.ContainerCreateOptions{
		Name:   name,
		Config: cfg,
		HostConfig: &container.HostConfig{
			Init:        &init,
			NetworkMode: container.NetworkMode(st.network),
			Mounts:      []mount.Mount{{Type: mount.TypeVolume, Source: st.volume, Target: WorkspaceDir}},
		},
	}
	if err := ctx.Err(); err != nil {
		return fail(err) // do not start what is already cancelled
	}
	created, err := cli.ContainerCreate(ctx, opts)
	if cerrdefs.IsConflict(err) {
		// A container of the same name is left from an interrupted call.
		b.removeContainer(context.WithoutCancel(ctx), cli, name)
		created, err = cli.ContainerCreate(ctx, opts)
	}
	if err != nil {
		return fail(fmt.Errorf("create container (image %q): %w", image, err))
	}
	id := created.ID
	defer b.removeContainer(context.WithoutCancel(ctx), cli, id)

	script := step.Script
	if plugin {
		script = ""
	}
	if err := b.copyStepFiles(ctx, cli, id, script); err != nil {
		return fail(err)
	}
	if step.WorkingDir != "" {
		if err := b.checkWorkingDir(ctx, cli, id, step.WorkingDir, wd); err != nil {
			return fail(err)
		}
	}

	code, midLine, err := b.run(ctx, cli, job, step, id, out)
	if err != nil {
		return backend.Result{ExitCode: code}, fmt.Errorf("run step %s: %w", step.ID, err)
	}

	say := func(format string, args ...any) {
		if midLine {
			io.WriteString(out, "\n")
			midLine = false
		}
		fmt.Fprintf(out, "runnel: "+format+"\n", args...)
	}
	res := backend.Result{ExitCode: code, Outputs: map[string]string{}}
	outputs, warnings, err := b.readOutputs(context.WithoutCancel(ctx), cli, id)
	if err != nil {
		say("cannot read $RUNNEL_OUTPUT: %v", err)
		return res, nil
	}
	for _, w := range warnings {
		say("%s", w)
	}
	if outputs != nil {
		res.Outputs = outputs
	}
	return res, nil
}

// run attaches to the created container, starts it, copies its output to out
// and waits for it to exit, stopping it when ctx is done. It returns the exit
// code (-1 when the step was stopped), whether the output ended mid-line, and,
// when ctx ended the step, ctx.Err().
func (b *Backend) run(ctx context.Context, cli *client.Client, job *backend.Job, step *backend.Step, id string, out io.Writer) (int, bool, error) {
	bg := context.WithoutCancel(ctx)
	att, err := cli.ContainerAttach(ctx, id, client.ContainerAttachOptions{Stream: true, Stdout: true, Stderr: true})
	if err != nil {
		return -1, false, fmt.Errorf("attach to container: %w", err)
	}
	defer att.Close()
	tw := &trackingWriter{w: out}
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		// Without a TTY the stream is multiplexed (whatever the media type
		// an older daemon announces); both halves go to out, in order.
		_, err := stdcopy.StdCopy(tw, tw, att.Reader)
		if err != nil && !errors.Is(err, net.ErrClosed) && !errors.Is(err, io.EOF) {
			b.log.Debug("step output stream ended", "job", job.ID, "step", step.ID, "err", err)
		}
	}()
	if _, err := cli.ContainerStart(ctx, id, client.ContainerStartOptions{}); err != nil {
		att.Close()
		<-copied
		if ctx.Err() != nil {
			return -1, tw.midLine, ctx.Err()
		}
		return -1, tw.midLine, fmt.Errorf("start container: %w", err)
	}
	b.log.Debug("step started", "job", job.ID, "step", step.ID, "container", id)
	wait := cli.ContainerWait(bg, id, client.ContainerWaitOptions{Condition: container.WaitConditionNotRunning})

	code := -1
	var waitErr, ctxErr error
	select {
	case r := <-wait.Result:
		code = int(r.StatusCode)
		if r.Error != nil && r.Error.Message != "" {
			waitErr = errors.New(r.Error.Message)
		}
	case waitErr = <-wait.Error:
	case <-ctx.Done():
		ctxErr = ctx.Err()
		b.stop(bg, cli, id, wait)
		b.log.Debug("step stopped", "job", job.ID, "step", step.ID, "container", id, "cause", context.Cause(ctx))
	}

	// The container has exited: its output stream ends by itself.
	select {
	case <-copied:
	case <-time.After(outputDrain):
		att.Close()
		<-copied
	}
	if ctxErr != nil {
		return -1, tw.midLine, ctxErr
	}
	if waitErr != nil {
		return -1, tw.midLine, fmt.Errorf("wait for container: %w", waitErr)
	}
	return code, tw.midLine, nil
}

// stop ends a running step container: SIGTERM (its init passes it to the
// step's process), up to GracePeriod for it to exit, then SIGKILL. It returns
// when the container has exited or Docker stopped answering.
func (b *Backend) stop(ctx context.Context, cli *client.Client, id string, wait client.ContainerWaitResult) {
	if _, err := cli.ContainerKill(ctx, id, client.ContainerKillOptions{Signal: "SIGTERM"}); err != nil && !isGone(err) {
		b.log.Warn("SIGTERM step container failed", "container", id, "err", err)
	}
	timer := time.NewTimer(b.grace)
	defer timer.Stop()
	select {
	case <-wait.Result:
		return
	case <-wait.Error:
		return
	case <-timer.C:
	}
	if _, err := cli.ContainerKill(ctx, id, client.ContainerKillOptions{Signal: "SIGKILL"}); err != nil && !isGone(err) {
		b.log.Warn("SIGKILL step container failed", "container", id, "err", err)
	}
	kctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	select {
	case <-wait.Result:
	case <-wait.Error:
	case <-kctx.Done():
		b.log.Warn("step container did not exit after SIGKILL", "container", id)
	}
}

// isGone tells errors about a container that no longer runs or exists.
func isGone(err error) bool {
	return cerrdefs.IsNotFound(err) || cerrdefs.IsConflict(err) || strings.Contains(err.Error(), "is not running")
}

func (b *Backend) removeContainer(ctx context.Context, cli *client.Client, id string) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := cli.ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true}); err != nil && !cerrdefs.IsNotFound(err) {
		b.log.Warn("remove container failed", "container", id, "err", err)
	}
}

// copyStepFiles puts the step directory (world-writable, for RUNNEL_OUTPUT)
// and, for a run step, its script into the created container.
func (b *Backend) copyStepFiles(ctx context.Context, cli *client.Client, id, script string) error {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	now := time.Now()
	hdrs := []*tar.Header{
		{Typeflag: tar.TypeDir, Name: "runnel/", Mode: 0o755, ModTime: now},
		{Typeflag: tar.TypeDir, Name: "runnel/step/", Mode: 0o1777, ModTime: now},
	}
	for _, h := range hdrs {
		if err := tw.WriteHeader(h); err != nil {
			return fmt.Errorf("pack step files: %w", err)
		}
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "runnel/step/script", Mode: 0o644, Size: int64(len(script)), ModTime: now}); err != nil {
		return fmt.Errorf("pack step files: %w", err)
	}
	if _, err := io.WriteString(tw, script); err != nil {
		return fmt.Errorf("pack step files: %w", err)
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("pack step files: %w", err)
	}
	if _, err := cli.CopyToContainer(ctx, id, client.CopyToContainerOptions{DestinationPath: "/", Content: &buf}); err != nil {
		return fmt.Errorf("copy the script into the container: %w", err)
	}
	return nil
}

// checkWorkingDir fails like the local backend when a step's working directory
// does not exist (Docker would create it).
func (b *Backend) checkWorkingDir(ctx context.Context, cli *client.Client, id, given, resolved string) error {
	res, err := cli.ContainerStatPath(ctx, id, client.ContainerStatPathOptions{Path: resolved})
	switch {
	case cerrdefs.IsNotFound(err):
		return fmt.Errorf("working directory %q does not exist", given)
	case err != nil:
		return fmt.Errorf("working directory %q: %w", given, err)
	case !res.Stat.Mode.IsDir():
		return fmt.Errorf("working directory %q is not a directory", given)
	}
	return nil
}

// readOutputs fetches and parses the step's $RUNNEL_OUTPUT file from the
// exited container; nil outputs when the step wrote none.
func (b *Backend) readOutputs(ctx context.Context, cli *client.Client, id string) (map[string]string, []string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	res, err := cli.CopyFromContainer(ctx, id, client.CopyFromContainerOptions{SourcePath: outputPath})
	if cerrdefs.IsNotFound(err) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	defer res.Content.Close()
	tr := tar.NewReader(res.Content)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil, nil, nil
		}
		if err != nil {
			return nil, nil, err
		}
		if h.Typeflag == tar.TypeReg {
			outputs, warnings := backend.ParseOutputs(tr)
			return outputs, warnings, nil
		}
	}
}

// DestroyJob removes the job's containers (services and any step container
// left behind), its network and its workspace volume: everything labelled
// with the job. It is idempotent, ignores ctx's cancellation, and returns nil
// for an invalid ID, for which nothing can exist.
func (b *Backend) DestroyJob(ctx context.Context, job *backend.Job) error {
	if checkID("job", job.ID) != nil {
		return nil
	}
	b.mu.Lock()
	_, known := b.jobs[job.ID]
	delete(b.jobs, job.ID)
	b.mu.Unlock()
	cli, err := b.client()
	if err != nil {
		if !known {
			return nil // never set up: nothing can exist
		}
		return fmt.Errorf("destroy job %s: %w", job.ID, err)
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	if err := b.removeAll(ctx, cli, job.ID); err != nil {
		if !known && errors.Is(err, ErrUnreachable) {
			return nil
		}
		return fmt.Errorf("destroy job %s: %w", job.ID, err)
	}
	b.log.Debug("job destroyed", "job", job.ID)
	return nil
}

// CleanupStale removes every container, network and volume that carries this
// backend's owner label: what an earlier process of this backend instance
// left behind when it died without DestroyJob. Call it once at startup,
// before any job runs. The error wraps ErrUnreachable when Docker does not
// answer.
func (b *Backend) CleanupStale(ctx context.Context) error {
	cli, err := b.client()
	if err != nil {
		return err
	}
	if err := b.Ping(ctx); err != nil {
		return err
	}
	return b.removeAll(ctx, cli, "")
}

// removeAll removes what carries the owner's labels (and the job's, when
// jobID is set): containers first, since they hold networks and volumes.
func (b *Backend) removeAll(ctx context.Context, cli *client.Client, jobID string) error {
	f := b.filters(jobID)
	var errs []error
	unreachable := func(err error) error {
		if client.IsErrConnectionFailed(err) {
			return fmt.Errorf("%w at %s: %v", ErrUnreachable, b.daemonHost(), err)
		}
		return err
	}
	cs, err := cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
	if err != nil {
		return fmt.Errorf("list containers: %w", unreachable(err))
	}
	for _, c := range cs.Items {
		if _, err := cli.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true}); err != nil && !cerrdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("remove container %s: %w", shortID(c.ID), err))
		} else if jobID == "" {
			b.log.Info("removed a container left by an earlier run of this backend", "container", shortID(c.ID), "names", c.Names, "job", c.Labels[LabelJob])
		}
	}
	ns, err := cli.NetworkList(ctx, client.NetworkListOptions{Filters: f})
	if err != nil {
		errs = append(errs, fmt.Errorf("list networks: %w", err))
	} else {
		for _, n := range ns.Items {
			if _, err := cli.NetworkRemove(ctx, n.ID, client.NetworkRemoveOptions{}); err != nil && !cerrdefs.IsNotFound(err) {
				errs = append(errs, fmt.Errorf("remove network %s: %w", n.Name, err))
			} else if jobID == "" {
				b.log.Info("removed a network left by an earlier run of this backend", "network", n.Name)
			}
		}
	}
	vs, err := cli.VolumeList(ctx, client.VolumeListOptions{Filters: f})
	if err != nil {
		errs = append(errs, fmt.Errorf("list volumes: %w", err))
	} else {
		for _, v := range vs.Items {
			if _, err := cli.VolumeRemove(ctx, v.Name, client.VolumeRemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
				errs = append(errs, fmt.Errorf("remove volume %s: %w", v.Name, err))
			} else if jobID == "" {
				b.log.Info("removed a volume left by an earlier run of this backend", "volume", v.Name)
			}
		}
	}
	return errors.Join(errs...)
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// workingDir resolves a step's working directory against the workspace.
func workingDir(wd string) (string, error) {
	if wd == "" {
		return WorkspaceDir, nil
	}
	if strings.ContainsRune(wd, 0) {
		return "", fmt.Errorf("working directory %q contains a NUL byte", wd)
	}
	if path.IsAbs(wd) {
		return path.Clean(wd), nil
	}
	return path.Join(WorkspaceDir, wd), nil
}

// interpreter returns the entrypoint that runs the script at script according
// to shell (see backend.Step.Shell); nil for a blank template. Programs are
// looked up in the container's PATH by Docker. Docker reads a container's
// stdout and stderr through two pipes, which loses the order between them, so
// the built-in shells first point stderr at stdout: their output keeps the
// order it was written in, as on the local backend. Command templates run
// as they are (the image may have no shell), and so do plugins.
func interpreter(shell, script string) []string {
	switch shell {
	case "":
		// bash when the image has it, else sh, as on the local backend.
		return []string{"sh", "-c", `exec 2>&1; if command -v bash >/dev/null 2>&1; then exec bash --noprofile --norc -eo pipefail "$0"; fi; exec sh -e "$0"`, script}
	case "bash":
		return []string{"bash", "-c", `exec 2>&1; exec bash --noprofile --norc -eo pipefail "$0"`, script}
	case "sh":
		return []string{"sh", "-c", `exec 2>&1; exec sh -e "$0"`, script}
	}
	argv := strings.Fields(shell)
	if len(argv) == 0 {
		return nil
	}
	substituted := false
	for i, a := range argv {
		if strings.Contains(a, "{0}") {
			argv[i] = strings.ReplaceAll(a, "{0}", script)
			substituted = true
		}
	}
	if !substituted {
		argv = append(argv, script)
	}
	return argv
}

// containerEnv builds a container's environment on top of the image's: CI=true
// unless set, the given variables, then forced (the backend's own).
func containerEnv(vars, forced map[string]string) ([]string, error) {
	m := map[string]string{"CI": "true"}
	for k, v := range vars {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return nil, fmt.Errorf("env: invalid variable name %q", k)
		}
		if strings.ContainsRune(v, 0) {
			return nil, fmt.Errorf("env: variable %s contains a NUL byte", k)
		}
		m[k] = v
	}
	for k, v := range forced {
		m[k] = v
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	env := make([]string, len(keys))
	for i, k := range keys {
		env[i] = k + "=" + m[k]
	}
	return env, nil
}

// trackingWriter remembers whether the output so far ends mid-line.
type trackingWriter struct {
	w       io.Writer
	midLine bool
	err     error
}

func (t *trackingWriter) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	t.midLine = p[len(p)-1] != '\n'
	if t.err == nil {
		_, t.err = t.w.Write(p)
	}
	return len(p), nil // a failing writer must not stall the stream
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
