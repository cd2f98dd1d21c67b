// Package configext is the client of a configuration extension: an HTTP
// service Runnel may ask for a run's pipeline definition before reading the
// pipeline file itself.
//
// The protocol is exactly the one of Drone CI's configuration extensions
// (github.com/drone/drone-go, package plugin/config), so that extensions
// written for Drone work unchanged:
//
//   - Runnel sends POST <endpoint> with the JSON body {"repo": …, "build": …},
//     whose objects use the field names of Drone's drone.Repo and drone.Build
//     (see Repo, Build and NewRequest for how Runnel's view is mapped onto
//     them).
//   - The request carries the headers Accept: application/json,
//     Accept-Encoding: identity, Content-Type: application/json,
//     Digest: SHA-256=<base64 of the SHA-256 of the body>, Date (now, UTC, in
//     http.TimeFormat) and a Signature header following the HTTP Signatures
//     draft (draft-cavage-http-signatures): keyId "hmac-key", algorithm
//     "hmac-sha256", over the headers "accept accept-encoding content-type
//     date digest", keyed with the raw bytes of the shared secret. The
//     extension verifies the signature and the digest, as Drone's
//     plugin/config handler does.
//   - 204 No Content, a JSON null, or {"data": ""} mean "no configuration":
//     Runnel falls back to the pipeline file. Any other 2xx answer must be
//     {"data": "<yaml text>"} (Drone's drone.Config; "kind" is ignored).
//     A status above 299 is an error whose message carries the status and the
//     (trimmed, bounded) response body, where extensions put the reason.
//   - Redirects are not followed, the whole exchange is bounded by a timeout
//     (60s by default) and an answer larger than 5 MiB is refused.
//
// Errors never contain the shared secret.
package configext

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/runnel-ci/runnel/internal/safeurl"
)

const (
	// DefaultTimeout bounds the whole exchange when Client.Timeout is zero.
	DefaultTimeout = 60 * time.Second
	// MaxResponseSize is the largest answer body accepted, in bytes.
	MaxResponseSize = 5 << 20
	// maxErrorBody bounds how much of an error answer goes into the error.
	maxErrorBody = 512

	// keyID and algorithm are the fixed Signature parameters Drone uses.
	keyID     = "hmac-key"
	algorithm = "hmac-sha256"
)

// signedHeaders are the headers covered by the signature, in order.
var signedHeaders = []string{"accept", "accept-encoding", "content-type", "date", "digest"}

// Client asks a config extension for a run's definition.
type Client struct {
	Endpoint string
	Secret   string
	Timeout  time.Duration    // 0 → 60s
	HTTP     *http.Client     // nil → a client that does not follow redirects
	Now      func() time.Time // nil → time.Now (Date header)
}

// response is Drone's drone.Config.
type response struct {
	Data string `json:"data"`
	Kind string `json:"kind"`
}

// Find asks the extension. found=false (and err=nil) means "no configuration: fall back".
func (c *Client) Find(ctx context.Context, req Request) (data string, found bool, err error) {
	endpoint := safeurl.Redact(c.Endpoint)
	if strings.TrimSpace(c.Endpoint) == "" {
		return "", false, c.errorf(nil, "configext: no endpoint configured")
	}
	body, err := json.Marshal(req)
	if err != nil {
		return "", false, c.errorf(err, "configext: encoding the request: %v", err)
	}

	timeout := c.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	tctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// timedOut tells whether a failure comes from our own deadline rather than
	// from the caller's context.
	timedOut := func() bool {
		return ctx.Err() == nil && errors.Is(tctx.Err(), context.DeadlineExceeded)
	}
	timeoutErr := func(err error) error {
		return c.errorf(err, "configext: config extension %s did not answer within %s", endpoint, timeout)
	}

	hreq, err := http.NewRequestWithContext(tctx, http.MethodPost, c.Endpoint, bytes.NewReader(body))
	if err != nil {
		return "", false, c.errorf(err, "configext: invalid endpoint %s: %v", endpoint, err)
	}
	now := time.Now
	if c.Now != nil {
		now = c.Now
	}
	hreq.Header.Set("Accept", "application/json")
	hreq.Header.Set("Accept-Encoding", "identity")
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set("Digest", digest(body))
	hreq.Header.Set("Date", now().UTC().Format(http.TimeFormat))
	hreq.Header.Set("Signature", signature(hreq.Header, c.Secret))

	res, err := c.httpClient().Do(hreq)
	if err != nil {
		if timedOut() {
			return "", false, timeoutErr(err)
		}
		return "", false, c.errorf(err, "configext: asking config extension %s: %v", endpoint, err)
	}
	defer res.Body.Close()

	if res.StatusCode == http.StatusNoContent {
		return "", false, nil
	}
	if res.StatusCode >= 300 && res.StatusCode <= 399 {
		loc := safeurl.Redact(res.Header.Get("Location"))
		return "", false, c.errorf(nil, "configext: config extension %s answered %s (redirect to %q, not followed)",
			endpoint, statusText(res.StatusCode), loc)
	}

	raw, err := io.ReadAll(io.LimitReader(res.Body, MaxResponseSize+1))
	if err != nil {
		if timedOut() {
			return "", false, timeoutErr(err)
		}
		return "", false, c.errorf(err, "configext: reading the answer of config extension %s: %v", endpoint, err)
	}
	if res.StatusCode > 299 || res.StatusCode < 200 {
		msg := fmt.Sprintf("configext: config extension %s answered %s", endpoint, statusText(res.StatusCode))
		if reason := errorBody(raw); reason != "" {
			msg += ": " + reason
		}
		return "", false, c.errorf(nil, "%s", msg)
	}
	if len(raw) > MaxResponseSize {
		return "", false, c.errorf(nil, "configext: the answer of config extension %s is larger than %d bytes", endpoint, MaxResponseSize)
	}

	var out *response
	if err := json.Unmarshal(raw, &out); err != nil {
		return "", false, c.errorf(err, "configext: invalid JSON answer from config extension %s (want {\"data\": \"<yaml>\"}): %v", endpoint, err)
	}
	if out == nil || out.Data == "" {
		return "", false, nil
	}
	return out.Data, true, nil
}

// noRedirect makes a 3xx the final answer.
func noRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

var defaultHTTP = &http.Client{CheckRedirect: noRedirect}

// httpClient is c.HTTP (or a default), made never to follow redirects.
func (c *Client) httpClient() *http.Client {
	if c.HTTP == nil {
		return defaultHTTP
	}
	hc := *c.HTTP
	hc.CheckRedirect = noRedirect
	return &hc
}

// errorf formats an error and removes the secret from its message, in case
// an endpoint or an extension's answer echoes it. The cause, if any, stays
// reachable through errors.Is / errors.As.
func (c *Client) errorf(cause error, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	if c.Secret != "" {
		msg = strings.ReplaceAll(msg, c.Secret, "[REDACTED]")
	}
	return &extError{msg: msg, cause: cause}
}

type extError struct {
	msg   string
	cause error
}

func (e *extError) Error() string { return e.msg }
func (e *extError) Unwrap() error { return e.cause }

func statusText(code int) string {
	if t := http.StatusText(code); t != "" {
		return fmt.Sprintf("%d %s", code, t)
	}
	return fmt.Sprintf("status %d", code)
}

// errorBody is the trimmed start of an error answer, at most maxErrorBody
// bytes, cut on a character boundary.
func errorBody(raw []byte) string {
	s := strings.TrimSpace(string(raw))
	if len(s) <= maxErrorBody {
		return strings.ToValidUTF8(s, "\uFFFD")
	}
	cut := maxErrorBody
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strings.ToValidUTF8(strings.TrimSpace(s[:cut]), "\uFFFD") + "…"
}

// digest is the Digest header value for body (RFC 3230, SHA-256).
func digest(body []byte) string {
	sum := sha256.Sum256(body)
	return "SHA-256=" + base64.StdEncoding.EncodeToString(sum[:])
}

// signingString is the draft-cavage signing string of the signed headers:
// "<lowercase name>: <value>" lines joined by "\n", without a trailing
// newline. Several values of one header are joined by ", ".
func signingString(h http.Header) string {
	var b strings.Builder
	for i, name := range signedHeaders {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(name)
		b.WriteString(": ")
		for j, v := range h.Values(name) {
			if j > 0 {
				b.WriteString(", ")
			}
			b.WriteString(strings.TrimSpace(v))
		}
	}
	return b.String()
}

// signature is the Signature header value for h, keyed with secret.
func signature(h http.Header, secret string) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(signingString(h)))
	sig := base64.StdEncoding.EncodeToString(mac.Sum(nil))
	return fmt.Sprintf(`keyId=%q,algorithm=%q,signature=%q,headers=%q`,
		keyID, algorithm, sig, strings.Join(signedHeaders, " "))
}
