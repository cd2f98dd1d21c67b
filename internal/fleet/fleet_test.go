package fleet

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/runnel-ci/runnel"
)

func TestTokenRequestCheck(t *testing.T) {
	now := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		r    TokenRequest
		exp  string // the expiry wanted, "" none
		fail string // "" = accepted
	}{
		{TokenRequest{Name: "pool a"}, "", ""},
		{TokenRequest{Name: "p", MaxUses: MaxRegistrationUses, ExpiresAt: "2026-03-02T12:30:00+02:00"}, "2026-03-02T10:30:00Z", ""},
		{TokenRequest{MaxUses: -1}, "", "body.maxUses: -1"},
		{TokenRequest{MaxUses: MaxRegistrationUses + 1}, "", "body.maxUses"},
		{TokenRequest{ExpiresAt: "tomorrow"}, "", `body.expiresAt: "tomorrow" is not an RFC 3339 time`},
		{TokenRequest{ExpiresAt: "2026-03-02T10:00:00Z"}, "", "is not in the future"},
		{TokenRequest{Name: strings.Repeat("n", 201)}, "", "body.name"},
	}
	for _, tt := range tests {
		exp, err := tt.r.Check(now)
		if tt.fail != "" {
			if !errors.Is(err, runnel.ErrInvalid) || !strings.Contains(err.Error(), tt.fail) {
				t.Errorf("%+v: got %v, want invalid with %q", tt.r, err, tt.fail)
			}
			continue
		}
		got := ""
		if exp != nil {
			got = exp.Format(time.RFC3339)
		}
		if err != nil || got != tt.exp {
			t.Errorf("%+v: expiry %q, %v; want %q", tt.r, got, err, tt.exp)
		}
	}
}

func TestCheckLabels(t *testing.T) {
	many := map[string]string{}
	for i := range MaxLabels + 1 {
		many["k"+strings.Repeat("x", i)] = "v"
	}
	for _, tt := range []struct {
		in   map[string]string
		fail string
	}{
		{map[string]string{"pool": "a", "team/infra": ""}, ""},
		{map[string]string{"bad key": "a"}, "body.labels.bad key:"},
		{many, "labels, at most 64"},
	} {
		out, err := CheckLabels(tt.in)
		if tt.fail == "" {
			if err != nil || len(out) != len(tt.in) {
				t.Errorf("%v: %v %v", tt.in, out, err)
			}
			continue
		}
		if !errors.Is(err, runnel.ErrInvalid) || !strings.Contains(err.Error(), tt.fail) {
			t.Errorf("%v: got %v, want %q", tt.in, err, tt.fail)
		}
	}
}
