package notify

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/runnel-ci/runnel/internal/safeurl"
)

// EventRunFinished is the event a webhook body and its X-Runnel-Event header
// name.
const EventRunFinished = "run.finished"

// Webhook request headers.
const (
	HeaderEvent     = "X-Runnel-Event"
	HeaderDelivery  = "X-Runnel-Delivery"
	HeaderSignature = "X-Runnel-Signature-256"
)

// WebhookBody is the JSON a webhook receives. Its shape is stable: members
// are only ever added. Every member is always present; text that is unknown
// is "", times that are unknown are null, and jobs is [] when there are
// none. Times are RFC 3339.
//
//	{
//	  "event": "run.finished",
//	  "deliveryId": "…",
//	  "pipeline": {"id": "…", "name": "…"},
//	  "run": {
//	    "id": "…", "number": 42, "status": "failed", "reason": "…",
//	    "triggerType": "manual", "triggeredBy": "…",
//	    "commit": "…", "branch": "main", "url": "https://…",
//	    "createdAt": "2025-01-02T03:04:05Z",
//	    "startedAt": "2025-01-02T03:04:06Z", "endedAt": "2025-01-02T03:09:06Z"
//	  },
//	  "jobs": [
//	    {"key": "build", "name": "Build", "stage": "default", "status": "failed", "reason": "…"}
//	  ]
//	}
type WebhookBody struct {
	Event      string   `json:"event"`
	DeliveryID string   `json:"deliveryId"`
	Pipeline   Pipeline `json:"pipeline"`
	Run        Run      `json:"run"`
	Jobs       []Job    `json:"jobs"`
}

// NewWebhookBody is the body Webhook sends for m.
func NewWebhookBody(m Message) WebhookBody {
	jobs := m.Jobs
	if jobs == nil {
		jobs = []Job{}
	}
	return WebhookBody{
		Event:      EventRunFinished,
		DeliveryID: m.DeliveryID,
		Pipeline:   m.Pipeline,
		Run:        m.Run,
		Jobs:       jobs,
	}
}

// Signature is the X-Runnel-Signature-256 value for body: "sha256=" and the
// hex HMAC-SHA256 of the exact body bytes keyed with secret. Receivers
// should compare it in constant time (hmac.Equal).
func Signature(secret string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// Webhook POSTs the JSON of m (see WebhookBody) to url with headers
// Content-Type: application/json, User-Agent: Runnel, X-Runnel-Event:
// run.finished, X-Runnel-Delivery: <DeliveryID>, and, when secret is not
// empty, X-Runnel-Signature-256: sha256=<hex HMAC-SHA256 of the exact body
// bytes, keyed with secret>.
//
// A 2xx answer is success. Redirects are not followed (a redirect is an
// error); ctx bounds the request. hc may be nil for a client with a 30s
// timeout. Errors name the URL without its user info and query.
func Webhook(ctx context.Context, hc *http.Client, url, secret string, m Message) error {
	body, err := json.Marshal(NewWebhookBody(m))
	if err != nil {
		return fmt.Errorf("webhook: encoding the body: %w", err)
	}
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set("User-Agent", "Runnel")
	h.Set(HeaderEvent, EventRunFinished)
	if m.DeliveryID != "" {
		h.Set(HeaderDelivery, m.DeliveryID)
	}
	if secret != "" {
		h.Set(HeaderSignature, Signature(secret, body))
	}
	if err := post(ctx, hc, url, safeurl.Origin, body, h); err != nil {
		return fmt.Errorf("webhook: %w", err)
	}
	return nil
}
