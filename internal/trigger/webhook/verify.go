// Package webhook owns what Runnel understands of forge webhooks (GitHub,
// GitLab, Gitea, Bitbucket Cloud): verifying a delivery's signature against
// the pipeline's secret, parsing its payload into an Event (kind, delivery
// id, trigger context, changed paths), and matching the event against a
// definition's `type: event` triggers — all pure — and the Service that
// handles a delivery end to end (service.go), beside cron.Service: the HTTP
// API only decodes the request and encodes the Outcome.
package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
)

// Providers are the forges whose webhooks Runnel accepts.
var Providers = []string{"github", "gitlab", "gitea", "bitbucket"}

// Errors of Verify and Parse; callers tell them apart with errors.Is.
var (
	// ErrUnknownProvider: the provider is not one of Providers.
	ErrUnknownProvider = errors.New("unknown webhook provider")
	// ErrUnauthorized: the signature (or token) is missing, malformed or
	// wrong, or no secret is set.
	ErrUnauthorized = errors.New("webhook signature rejected")
	// ErrPayload: the payload is not what the provider documents.
	ErrPayload = errors.New("webhook payload not understood")
)

// KnownProvider reports whether p is one of Providers.
func KnownProvider(p string) bool { return slices.Contains(Providers, p) }

func unknownProvider(p string) error {
	return fmt.Errorf("%w %q; accepted: %s", ErrUnknownProvider, p, strings.Join(Providers, ", "))
}

// Verify checks that body was sent by someone knowing secret:
//   - github: X-Hub-Signature-256 is "sha256=" and the hex HMAC-SHA256 of body;
//   - gitlab: X-Gitlab-Token is the secret itself (GitLab signs nothing);
//   - gitea: X-Gitea-Signature is the hex HMAC-SHA256 of body, no prefix;
//   - bitbucket: X-Hub-Signature is "sha256=" and the hex HMAC-SHA256 of body
//     (what Bitbucket Cloud sends when the webhook has a secret).
//
// Every comparison takes constant time. An empty secret never verifies.
// Errors wrap ErrUnauthorized (or ErrUnknownProvider) and say which header was
// missing or wrong, never what was expected.
func Verify(provider string, header http.Header, body []byte, secret string) error {
	if !KnownProvider(provider) {
		return unknownProvider(provider)
	}
	if secret == "" {
		return fmt.Errorf("%w: no webhook secret is set for this pipeline", ErrUnauthorized)
	}
	switch provider {
	case "gitlab":
		tok := header.Get("X-Gitlab-Token")
		if tok == "" {
			return fmt.Errorf("%w: header X-Gitlab-Token is missing", ErrUnauthorized)
		}
		// Hash both sides so that the comparison does not even leak the length.
		a, b := sha256.Sum256([]byte(tok)), sha256.Sum256([]byte(secret))
		if !hmac.Equal(a[:], b[:]) {
			return fmt.Errorf("%w: header X-Gitlab-Token does not match the pipeline's webhook secret", ErrUnauthorized)
		}
		return nil
	case "github":
		return checkHMAC(header, "X-Hub-Signature-256", "sha256=", body, secret)
	case "gitea":
		return checkHMAC(header, "X-Gitea-Signature", "", body, secret)
	default: // bitbucket
		return checkHMAC(header, "X-Hub-Signature", "sha256=", body, secret)
	}
}

func checkHMAC(header http.Header, name, prefix string, body []byte, secret string) error {
	v := header.Get(name)
	if v == "" {
		return fmt.Errorf("%w: header %s is missing (is a secret set on the webhook?)", ErrUnauthorized, name)
	}
	hexSig, ok := strings.CutPrefix(v, prefix)
	if !ok {
		return fmt.Errorf("%w: header %s must start with %q", ErrUnauthorized, name, prefix)
	}
	got, err := hex.DecodeString(strings.TrimSpace(hexSig))
	if err != nil {
		return fmt.Errorf("%w: header %s is not a hex digest", ErrUnauthorized, name)
	}
	if !hmac.Equal(got, Sign(body, secret)) {
		return fmt.Errorf("%w: header %s does not match the body signed with the pipeline's webhook secret", ErrUnauthorized, name)
	}
	return nil
}

// Sign is the HMAC-SHA256 of body under secret (what GitHub, Gitea and
// Bitbucket send, hex-encoded).
func Sign(body []byte, secret string) []byte {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return m.Sum(nil)
}

// SignatureHeader returns the header and value a provider sends for body:
// what a test or a client replaying a delivery needs.
func SignatureHeader(provider string, body []byte, secret string) (name, value string) {
	sig := hex.EncodeToString(Sign(body, secret))
	switch provider {
	case "github":
		return "X-Hub-Signature-256", "sha256=" + sig
	case "gitea":
		return "X-Gitea-Signature", sig
	case "bitbucket":
		return "X-Hub-Signature", "sha256=" + sig
	default:
		return "X-Gitlab-Token", secret
	}
}
