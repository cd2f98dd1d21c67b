package notify

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/smtp"
	"net/textproto"
	"strings"
	"time"
)

// Mailer sends mail over SMTP. Its zero Timeout and Hostname take their
// defaults; Addr and From are required.
type Mailer struct {
	// Addr is the SMTP server's host:port.
	Addr string
	// From is the sender, "ci@example.com" or "Runnel <ci@example.com>".
	From string
	// Username and Password, when Username is set, authenticate with AUTH
	// PLAIN, which is only done over TLS or to localhost (as net/smtp
	// allows).
	Username, Password string
	// TLS is "" (STARTTLS when the server offers it), "starttls" (STARTTLS
	// required), "tls" (implicit TLS, usually port 465) or "none" (plain
	// text only).
	TLS string
	// Timeout bounds the whole conversation; default 30s. The ctx given to
	// Send bounds it too.
	Timeout time.Duration
	// Hostname is the name given in EHLO/HELO; default "localhost".
	Hostname string

	// tlsConfig, when set, replaces the default TLS configuration (tests
	// use it to trust their own certificate).
	tlsConfig *tls.Config
}

// DefaultSMTPTimeout bounds an SMTP conversation when Mailer.Timeout is 0.
const DefaultSMTPTimeout = 30 * time.Second

// maxSubjectRunes bounds a subject, so that no header line gets too long.
const maxSubjectRunes = 250

// Send mails msg to the recipients to. The subject defaults to
// "[<pipeline>] run #<n> <status>". The body is text/plain UTF-8 (a summary,
// the link to the run and the failed jobs); the headers are From, To,
// Subject (RFC 2047 encoded when not ASCII), Date, Message-ID (derived from
// msg.DeliveryID, so the same on every retry), MIME-Version, Content-Type,
// Content-Transfer-Encoding and Auto-Submitted.
//
// A subject, address or hostname holding CR, LF or another control character
// is rejected before anything is sent, so that no header can be injected.
// SMTP errors name the server and its reply.
func (m *Mailer) Send(ctx context.Context, to []string, subject string, msg Message) error {
	if m.Addr == "" {
		return errors.New("smtp: no server address configured")
	}
	host, _, err := net.SplitHostPort(m.Addr)
	if err != nil {
		return fmt.Errorf("smtp: server address %q: want host:port", m.Addr)
	}
	from, err := parseAddress("sender", m.From)
	if err != nil {
		return err
	}
	if len(to) == 0 {
		return errors.New("smtp: no recipients")
	}
	rcpts := make([]*mail.Address, 0, len(to))
	for _, t := range to {
		a, err := parseAddress("recipient", t)
		if err != nil {
			return err
		}
		rcpts = append(rcpts, a)
	}
	if subject == "" {
		subject = sanitizeLine(fmt.Sprintf("[%s] run #%d %s", msg.pipelineName(), msg.Run.Number, msg.Run.Status))
	} else if err := checkHeaderText("subject", subject); err != nil {
		return err
	}
	subject = truncate(subject, maxSubjectRunes)
	hostname := m.Hostname
	if hostname == "" {
		hostname = "localhost"
	}
	if err := checkHeaderText("hostname", hostname); err != nil {
		return err
	}
	if strings.ContainsAny(hostname, " \t") {
		return fmt.Errorf("smtp: hostname %q: must not contain spaces", hostname)
	}
	switch m.TLS {
	case "", "starttls", "tls", "none":
	default:
		return fmt.Errorf("smtp: TLS mode %q: want \"\", \"starttls\", \"tls\" or \"none\"", m.TLS)
	}

	data, err := buildMail(from, rcpts, subject, msg, time.Now())
	if err != nil {
		return fmt.Errorf("smtp: building the message: %w", err)
	}

	timeout := m.Timeout
	if timeout <= 0 {
		timeout = DefaultSMTPTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	err = m.converse(ctx, host, hostname, from.Address, rcpts, data)
	if err == nil {
		return nil
	}
	cerr := ctx.Err()
	if cerr == nil {
		// The connection's deadline, which is ctx's, may pass a moment
		// before ctx notices.
		var ne net.Error
		if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) && errors.As(err, &ne) && ne.Timeout() {
			cerr = context.DeadlineExceeded
		}
	}
	if cerr != nil && !errors.Is(err, cerr) {
		return fmt.Errorf("smtp %s: %w: %w", m.Addr, cerr, err)
	}
	return fmt.Errorf("smtp %s: %w", m.Addr, err)
}

// ReplyError is an SMTP server's refusal: its reply code and text.
type ReplyError struct {
	// Code is the three-digit reply code, like 550.
	Code int
	// Text is the reply text, lines joined with spaces.
	Text string
	err  error
}

func (e *ReplyError) Error() string { return fmt.Sprintf("server replied %d %s", e.Code, e.Text) }

// Unwrap returns the *textproto.Error net/smtp returned.
func (e *ReplyError) Unwrap() error { return e.err }

// replyError makes a *textproto.Error readable: net/smtp quotes the reply.
func replyError(err error) error {
	var te *textproto.Error
	if errors.As(err, &te) {
		return &ReplyError{Code: te.Code, Text: oneLine(sanitizeLine(te.Msg)), err: err}
	}
	return err
}

// converse dials the server and runs the SMTP conversation, until ctx ends.
func (m *Mailer) converse(ctx context.Context, host, hostname, from string, rcpts []*mail.Address, data []byte) (err error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", m.Addr)
	if err != nil {
		return fmt.Errorf("connecting: %w", err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	// Unblock any read or write in progress when ctx ends.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	tlsConfig := m.tlsConfig
	if tlsConfig == nil {
		tlsConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	tlsConfig = tlsConfig.Clone()
	if tlsConfig.ServerName == "" {
		tlsConfig.ServerName = host
	}

	if m.TLS == "tls" {
		tc := tls.Client(conn, tlsConfig)
		if err := tc.HandshakeContext(ctx); err != nil {
			return fmt.Errorf("TLS handshake: %w", err)
		}
		conn = tc
	}
	c, err := smtp.NewClient(conn, host)
	if err != nil {
		return fmt.Errorf("greeting: %w", replyError(err))
	}
	defer c.Close()
	if err := c.Hello(hostname); err != nil {
		return fmt.Errorf("EHLO: %w", replyError(err))
	}
	if m.TLS == "" || m.TLS == "starttls" {
		if ok, _ := c.Extension("STARTTLS"); ok {
			if err := c.StartTLS(tlsConfig); err != nil {
				return fmt.Errorf("STARTTLS: %w", replyError(err))
			}
		} else if m.TLS == "starttls" {
			return errors.New("STARTTLS is required but the server does not offer it")
		}
	}
	if m.Username != "" {
		if ok, _ := c.Extension("AUTH"); !ok {
			return errors.New("AUTH: a username is configured but the server does not offer AUTH")
		}
		if err := c.Auth(smtp.PlainAuth("", m.Username, m.Password, host)); err != nil {
			return fmt.Errorf("AUTH PLAIN: %w", replyError(err))
		}
	}
	if err := c.Mail(from); err != nil {
		return fmt.Errorf("MAIL FROM:<%s>: %w", from, replyError(err))
	}
	for _, r := range rcpts {
		if err := c.Rcpt(r.Address); err != nil {
			return fmt.Errorf("RCPT TO:<%s>: %w", r.Address, replyError(err))
		}
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("DATA: %w", replyError(err))
	}
	if _, err := w.Write(data); err != nil {
		w.Close()
		return fmt.Errorf("DATA: sending the message: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("DATA: %w", replyError(err))
	}
	// The message is accepted: a failing QUIT does not undo that.
	_ = c.Quit()
	return nil
}

// parseAddress parses one RFC 5322 address, refusing control characters
// (CR and LF above all) so that it cannot inject a header or an SMTP
// command.
func parseAddress(what, s string) (*mail.Address, error) {
	if err := checkHeaderText(what+" address", s); err != nil {
		return nil, err
	}
	a, err := mail.ParseAddress(s)
	if err != nil {
		return nil, fmt.Errorf("smtp: %s address %q: %w", what, s, err)
	}
	return a, nil
}

// checkHeaderText refuses control characters (CR, LF, NUL, …; tab is
// allowed) in text bound for a header or an SMTP command.
func checkHeaderText(what, s string) error {
	for _, r := range s {
		if r == '\r' || r == '\n' {
			return fmt.Errorf("smtp: %s %q contains a line break (CR or LF), which could inject mail headers; refusing to send", what, s)
		}
		if (r < 0x20 && r != '\t') || r == 0x7f {
			return fmt.Errorf("smtp: %s %q contains a control character; refusing to send", what, s)
		}
	}
	return nil
}

// sanitizeLine replaces control characters with spaces, for header text
// Runnel builds itself from names it does not control.
func sanitizeLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}

// messageID is the Message-ID for msg: derived from its DeliveryID only (and
// the sender's domain), so a retry carries the same one.
func messageID(msg Message, from *mail.Address) string {
	key := msg.DeliveryID
	if key == "" {
		key = "run:" + msg.Pipeline.ID + ":" + msg.Run.ID + ":" + msg.Run.Status
	}
	sum := sha256.Sum256([]byte(key))
	domain := "runnel.invalid"
	if i := strings.LastIndexByte(from.Address, '@'); i >= 0 && isDotAtom(from.Address[i+1:]) {
		domain = from.Address[i+1:]
	}
	return "<runnel." + hex.EncodeToString(sum[:16]) + "@" + domain + ">"
}

// isDotAtom reports whether s is a plain domain name fit for a Message-ID.
func isDotAtom(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.') {
			return false
		}
	}
	return true
}

// buildMail renders the whole message, headers and quoted-printable body,
// with CRLF line ends.
func buildMail(from *mail.Address, rcpts []*mail.Address, subject string, msg Message, now time.Time) ([]byte, error) {
	var b strings.Builder
	writeHeader(&b, "From", from.String())
	tos := make([]string, len(rcpts))
	for i, r := range rcpts {
		tos[i] = r.String()
	}
	writeHeader(&b, "To", strings.Join(tos, ", "))
	writeHeader(&b, "Subject", mime.QEncoding.Encode("utf-8", subject))
	writeHeader(&b, "Date", now.Format(time.RFC1123Z))
	writeHeader(&b, "Message-ID", messageID(msg, from))
	writeHeader(&b, "MIME-Version", "1.0")
	writeHeader(&b, "Content-Type", "text/plain; charset=utf-8")
	writeHeader(&b, "Content-Transfer-Encoding", "quoted-printable")
	writeHeader(&b, "Auto-Submitted", "auto-generated")
	b.WriteString("\r\n")

	qp := quotedprintable.NewWriter(&b)
	if _, err := qp.Write([]byte(mailBody(msg))); err != nil {
		return nil, err
	}
	if err := qp.Close(); err != nil {
		return nil, err
	}
	out := b.String()
	if !strings.HasSuffix(out, "\r\n") {
		out += "\r\n"
	}
	return []byte(out), nil
}

// writeHeader writes "Name: value", folded at spaces so that lines stay
// within 78 characters where the words allow (an encoded word, at most 75,
// may go on its own line right after "Name:", as RFC 2047 wants lines with
// encoded words to be at most 76). value holds no CR or LF.
func writeHeader(b *strings.Builder, name, value string) {
	b.WriteString(name)
	b.WriteString(":")
	n := len(name) + 1
	for _, w := range strings.Split(value, " ") {
		// Fold before a word that does not fit, unless the line holds
		// nothing to fold after (only the folding space itself).
		if w != "" && n > 1 && n+1+len(w) > 78 {
			b.WriteString("\r\n")
			n = 0
		}
		b.WriteString(" ")
		b.WriteString(w)
		n += 1 + len(w)
	}
	b.WriteString("\r\n")
}

// mailBody is the plain-text body of the mail for msg.
func mailBody(msg Message) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s run #%d %s", msg.pipelineName(), msg.Run.Number, msg.Run.Status)
	if msg.Run.Reason != "" {
		fmt.Fprintf(&b, ": %s", oneLine(msg.Run.Reason))
	}
	b.WriteString("\n\n")
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(&b, "%-10s %s\n", k+":", oneLine(v))
		}
	}
	row("Run", msg.Run.URL)
	row("Pipeline", msg.pipelineName())
	row("Branch", msg.Run.Branch)
	row("Commit", msg.Run.Commit)
	trigger := msg.Run.TriggerType
	if msg.Run.TriggeredBy != "" {
		trigger += " by " + msg.Run.TriggeredBy
	}
	row("Trigger", strings.TrimSpace(trigger))
	if msg.Run.StartedAt != nil {
		row("Started", msg.Run.StartedAt.UTC().Format(time.RFC3339))
	}
	if msg.Run.EndedAt != nil {
		row("Ended", msg.Run.EndedAt.UTC().Format(time.RFC3339))
	}
	if d := msg.duration(); d > 0 {
		row("Duration", d.String())
	}
	if failed := msg.failedJobs(); len(failed) > 0 {
		b.WriteString("\nFailed jobs:\n")
		for _, j := range failed {
			fmt.Fprintf(&b, "  - %s", oneLine(jobName(j)))
			if j.Stage != "" {
				fmt.Fprintf(&b, " (stage %s)", oneLine(j.Stage))
			}
			if j.Reason != "" {
				fmt.Fprintf(&b, ": %s", oneLine(j.Reason))
			}
			b.WriteString("\n")
		}
	}
	b.WriteString("\n-- \nSent by Runnel.\n")
	return b.String()
}
