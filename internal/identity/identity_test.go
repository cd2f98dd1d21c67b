package identity

import (
	"testing"

	"github.com/runnel-ci/runnel"
)

func TestCheckLogin(t *testing.T) {
	for login, ok := range map[string]bool{
		"alice": true, "a": true, "ci-bot.2": true, "Bob_3": true, "0x": true,
		"": false, "-a": false, ".a": false, "a b": false, "a/b": false, "élise": false,
		"a123456789012345678901234567890123456789012345678901234567890123": false, // 64
		"a12345678901234567890123456789012345678901234567890123456789012":  true,  // 63
	} {
		if got := CheckLogin("body.login", login) == nil; got != ok {
			t.Errorf("CheckLogin(%q) ok=%v, want %v", login, got, ok)
		}
	}
}

func TestAllows(t *testing.T) {
	tests := []struct {
		scopes []string
		need   string
		want   bool
	}{
		{nil, runnel.ScopeAdmin, true},
		{[]string{"read"}, "read", true},
		{[]string{"read"}, "run", false},
		{[]string{"write"}, "run", true},
		{[]string{"run", "read"}, "write", false},
		{[]string{"admin"}, "read", true},
		{[]string{}, "read", false},
		{[]string{"bogus"}, "read", false},
	}
	for _, tt := range tests {
		if got := runnel.Allows(tt.scopes, tt.need); got != tt.want {
			t.Errorf("Allows(%v, %s) = %v, want %v", tt.scopes, tt.need, got, tt.want)
		}
	}
}
