package agentcmd

import (
	"testing"
	"time"
)

func TestBackendKinds(t *testing.T) {
	if err := CheckBackendKind("podman"); err == nil || err.Error() != `"podman": want local, docker or auto` {
		t.Errorf("CheckBackendKind(podman) = %v", err)
	}
	root := t.TempDir()
	for _, kind := range []string{"local", "docker", "auto", ""} {
		if err := CheckBackendKind(kind); err != nil && kind != "" {
			t.Errorf("CheckBackendKind(%q) = %v", kind, err)
		}
		// Building a backend contacts nothing (no Docker engine needed).
		b, err := NewBackend(kind, root, time.Second, nil)
		if err != nil || b == nil {
			t.Errorf("NewBackend(%q) = %v, %v", kind, b, err)
		}
	}
	if _, err := NewBackend("podman", root, time.Second, nil); err == nil {
		t.Error("NewBackend(podman) built something")
	}
}
