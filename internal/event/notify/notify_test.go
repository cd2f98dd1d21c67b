package notify

import (
	"testing"
	"time"
)

func TestMatches(t *testing.T) {
	tests := []struct {
		on     []string
		status string
		want   bool
	}{
		{[]string{"success"}, "success", true},
		{[]string{"success"}, "failed", false},
		{[]string{"failure"}, "failed", true},
		{[]string{"failure"}, "success", false},
		{[]string{"failure"}, "failure", false}, // not a run status
		{[]string{"failed"}, "failed", false},   // not an on value
		{[]string{"failure", "cancelled"}, "cancelled", true},
		{[]string{"failure", "cancelled"}, "partial", false},
		{[]string{"partial"}, "partial", true},
		{[]string{"always"}, "success", true},
		{[]string{"always"}, "failed", true},
		{[]string{"always"}, "cancelled", true},
		{[]string{"always"}, "partial", true},
		{[]string{"always"}, "running", false},
		{[]string{"always"}, "pending", false},
		{[]string{"always"}, "", false},
		{[]string{"success"}, "paused", false},
		{nil, "success", false},
		{[]string{}, "failed", false},
		{[]string{"bogus", "success"}, "success", true},
	}
	for _, tt := range tests {
		if got := Matches(tt.on, tt.status); got != tt.want {
			t.Errorf("Matches(%q, %q) = %v, want %v", tt.on, tt.status, got, tt.want)
		}
	}
}

// testMessage is a failed run with one failed job whose reason needs
// escaping.
func testMessage(runURL string) Message {
	created := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	started := created.Add(time.Second)
	ended := started.Add(5 * time.Minute)
	return Message{
		DeliveryID: "dlv-0001",
		Pipeline:   Pipeline{ID: "pl-1", Name: "build"},
		Run: Run{
			ID: "run-1", Number: 12, Status: "failed", Reason: "a job failed",
			TriggerType: "manual", TriggeredBy: "alice",
			Commit: "0123456789abcdef0123456789abcdef01234567", Branch: "main",
			URL: runURL, CreatedAt: created, StartedAt: &started, EndedAt: &ended,
		},
		Jobs: []Job{
			{Key: "lint", Name: "Lint", Stage: "check", Status: "success"},
			{Key: "test", Name: "Unit tests", Stage: "check", Status: "failed", Reason: "exit 1 <script>&"},
			{Key: "deploy", Name: "Deploy", Stage: "ship", Status: "skipped", Reason: "needs failed"},
		},
	}
}
