package auto

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/runnel-ci/runnel/internal/backend"
	"github.com/runnel-ci/runnel/internal/backend/docker"
	"github.com/runnel-ci/runnel/internal/backend/local"
	"github.com/runnel-ci/runnel/internal/testdocker"
)

func newAuto(t *testing.T, dockerHost string) *Backend {
	t.Helper()
	root := t.TempDir()
	lb, err := local.New(local.Options{Root: root, GracePeriod: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	db, err := docker.New(docker.Options{Root: root, Host: dockerHost, GracePeriod: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return New(lb, db, nil)
}

func run(t *testing.T, b backend.Backend, job *backend.Job, script string) (string, error) {
	t.Helper()
	if _, err := b.SetupJob(context.Background(), job); err != nil {
		b.DestroyJob(context.Background(), job)
		return "", err
	}
	defer func() {
		if err := b.DestroyJob(context.Background(), job); err != nil {
			t.Errorf("DestroyJob: %v", err)
		}
	}()
	var out bytes.Buffer
	res, err := b.RunStep(context.Background(), job, &backend.Step{ID: "step-1", Script: script}, &out)
	if err == nil && res.ExitCode != 0 {
		t.Errorf("exit code %d, output %q", res.ExitCode, out.String())
	}
	return out.String(), err
}

// TestWithoutDocker: on a machine without Docker, jobs without containers
// run locally and the others fail their setup with a clear error.
func TestWithoutDocker(t *testing.T) {
	b := newAuto(t, "unix:///nonexistent/docker.sock")
	if err := b.CleanupStale(context.Background()); err != nil {
		t.Errorf("CleanupStale without Docker: %v", err)
	}
	out, err := run(t, b, &backend.Job{ID: "plain", Name: "plain"}, "echo local")
	if err != nil || out != "local\n" {
		t.Errorf("plain job: %q, %v", out, err)
	}
	_, err = run(t, b, &backend.Job{ID: "img", Name: "img", Image: "golang:1.26"}, "echo never")
	if !errors.Is(err, docker.ErrUnreachable) || !strings.Contains(err.Error(), `image "golang:1.26"`) || !strings.Contains(err.Error(), "nonexistent/docker.sock") {
		t.Errorf("job with an image: %v", err)
	}
	_, err = run(t, b, &backend.Job{ID: "plug", Name: "plug", Plugins: []string{"plugins/s3"}}, "echo never")
	if !errors.Is(err, docker.ErrUnreachable) {
		t.Errorf("job with a plugin: %v", err)
	}
}

// TestWithDocker: a job with an image runs in it, one without runs locally.
func TestWithDocker(t *testing.T) {
	testdocker.Connect(t)
	b := newAuto(t, "")
	t.Cleanup(func() { b.CleanupStale(context.Background()) })
	out, err := run(t, b, &backend.Job{ID: "img", Name: "img", Image: testdocker.Busybox}, "test -e /etc/os-release || echo in busybox")
	if err != nil || out != "in busybox\n" {
		t.Errorf("job with an image: %q, %v", out, err)
	}
	out, err = run(t, b, &backend.Job{ID: "plain", Name: "plain"}, "echo $RUNNEL_WORKSPACE")
	if err != nil || strings.HasPrefix(out, docker.WorkspaceDir) {
		t.Errorf("plain job: %q, %v", out, err)
	}
}
