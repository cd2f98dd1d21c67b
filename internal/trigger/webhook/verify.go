// Package webhook owns what Runnel understands of forge webhooks (GitHub,
// GitLab, Gitea, Bitbucket Cloud): verifying a delivery's signature against
// the pipeline's secret, parsing its payload into an Event (kind, delivery
// id, trigger context, changed paths), and matching the event against a
// definition's `type: event` triggers — all pure — and the Service that
// handles a delivery end to end (service.go), beside cron.Service: the HTTP
// API only decodes the request and encodes the Outcome.
package webhook

import (
	"net/http"
	"slices"

	"github.com/runnel-ci/runnel/internal/forge"
	"github.com/runnel-ci/runnel/internal/forge/forges"
)

// What a delivery becomes, and the forges' errors, are package forge's; the
// names here keep the trigger's vocabulary in one place for its callers.

// Event is a parsed delivery.
type Event = forge.Event

// Kinds of Event.
const (
	KindPush        = forge.KindPush
	KindTag         = forge.KindTag
	KindPullRequest = forge.KindPullRequest
	KindPing        = forge.KindPing
	KindIgnored     = forge.KindIgnored
)

// Errors of Verify and Parse; callers tell them apart with errors.Is.
var (
	ErrUnknownProvider = forge.ErrUnknownProvider
	ErrUnauthorized    = forge.ErrUnauthorized
	ErrPayload         = forge.ErrPayload
)

// Providers are the forges whose webhooks Runnel accepts.
var Providers = forges.Names()

// KnownProvider reports whether p is one of Providers.
func KnownProvider(p string) bool { return slices.Contains(Providers, p) }

// Verify checks that body was sent by someone knowing secret, as provider's
// forge signs deliveries (see each forge's Verify). An empty secret never
// verifies.
func Verify(provider string, header http.Header, body []byte, secret string) error {
	return forges.Verify(provider, header, body, secret)
}

// Parse reads a delivery's headers and JSON body with provider's forge.
// Events Runnel has no use for come back as KindIgnored with a Reason, not as
// errors; errors wrap ErrUnknownProvider or ErrPayload.
func Parse(provider string, header http.Header, body []byte) (*Event, error) {
	return forges.Parse(provider, header, body)
}

// Sign is the HMAC-SHA256 of body under secret (what GitHub, Gitea and
// Bitbucket send, hex-encoded).
func Sign(body []byte, secret string) []byte { return forge.Sign(body, secret) }

// SignatureHeader returns the header and value a provider sends for body:
// what a test or a client replaying a delivery needs.
func SignatureHeader(provider string, body []byte, secret string) (name, value string) {
	return forges.SignatureHeader(provider, body, secret)
}
