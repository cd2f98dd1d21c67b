package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/engine"
	"github.com/runnel-ci/runnel/internal/plan"
)

// printer shows a run as it happens and summarises it at the end.
type printer interface {
	engine.Observer
	Summary(engine.RunResult)
	// Flush writes buffered log lines; cmdExec calls it periodically so output
	// is live without a write system call per line.
	Flush()
}

// jsonPrinter writes one JSON object per line: every event, then a summary.
type jsonPrinter struct {
	mu  sync.Mutex
	w   *bufio.Writer
	enc *json.Encoder
}

func newJSONPrinter(w io.Writer) *jsonPrinter {
	bw := bufio.NewWriter(w)
	return &jsonPrinter{w: bw, enc: json.NewEncoder(bw)}
}

func (p *jsonPrinter) Flush() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.w.Flush()
}

func (p *jsonPrinter) Event(e engine.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	_ = p.enc.Encode(e)
	if e.Type != engine.EventLog {
		p.w.Flush()
	}
}

type jsonStep struct {
	Name       string            `json:"name"`
	Status     runnel.StepStatus `json:"status"`
	ExitCode   *int              `json:"exitCode,omitempty"`
	DurationMS int64             `json:"durationMs"`
	Error      string            `json:"error,omitempty"`
}

type jsonJob struct {
	ID         string           `json:"id"`
	Name       string           `json:"name"`
	Stage      string           `json:"stage"`
	Status     runnel.JobStatus `json:"status"`
	Attempts   int              `json:"attempts"`
	Reason     string           `json:"reason,omitempty"`
	DurationMS int64            `json:"durationMs"`
	Steps      []jsonStep       `json:"steps"`
}

func (p *jsonPrinter) Summary(r engine.RunResult) {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := struct {
		Type       string           `json:"type"`
		Status     runnel.RunStatus `json:"status"`
		DurationMS int64            `json:"durationMs"`
		Jobs       []jsonJob        `json:"jobs"`
	}{Type: "summary", Status: r.Status, DurationMS: r.Ended.Sub(r.Started).Milliseconds(), Jobs: []jsonJob{}}
	for _, j := range r.Jobs {
		jj := jsonJob{ID: j.Job.ID, Name: j.Job.Name, Stage: j.Job.Stage, Status: j.Status, Attempts: j.Attempts, Reason: j.Reason,
			DurationMS: dur(j.Started, j.Ended).Milliseconds(), Steps: []jsonStep{}}
		for _, s := range j.Steps {
			jj.Steps = append(jj.Steps, jsonStep{Name: s.Name, Status: s.Status, ExitCode: s.ExitCode, DurationMS: dur(s.Started, s.Ended).Milliseconds(), Error: s.Error})
		}
		out.Jobs = append(out.Jobs, jj)
	}
	_ = p.enc.Encode(out)
	p.w.Flush()
}

func dur(a, b time.Time) time.Duration {
	if a.IsZero() || b.IsZero() || b.Before(a) {
		return 0
	}
	return b.Sub(a)
}

// textPrinter writes prefixed live output and a summary table.
type textPrinter struct {
	mu     sync.Mutex
	w      *bufio.Writer
	color  bool
	single bool // one job only: shorter prefixes
}

func newTextPrinter(w io.Writer, color bool, p *plan.Plan) *textPrinter {
	return &textPrinter{w: bufio.NewWriterSize(w, 32<<10), color: color, single: len(p.Jobs) == 1}
}

const (
	cReset  = "\x1b[0m"
	cDim    = "\x1b[2m"
	cRed    = "\x1b[31m"
	cGreen  = "\x1b[32m"
	cYellow = "\x1b[33m"
	cCyan   = "\x1b[36m"
)

func (p *textPrinter) paint(c, s string) string {
	if !p.color {
		return s
	}
	return c + s + cReset
}

func (p *textPrinter) statusColor(s string) string {
	switch s { // a run's, a job's or a step's
	case string(runnel.StepSuccess):
		return cGreen
	case string(runnel.StepFailed), string(runnel.StepTimeout):
		return cRed
	case string(runnel.StepCancelled), string(runnel.RunPartial), string(runnel.StepSkipped):
		return cYellow
	}
	return cDim
}

func (p *textPrinter) Flush() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.w.Flush()
}

func (p *textPrinter) Event(e engine.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch e.Type {
	case engine.EventLog:
		prefix := "[" + e.JobName + "/" + e.StepName + "]"
		if p.single {
			prefix = "[" + e.StepName + "]"
		}
		msg := e.Message
		if e.Level != engine.LevelInfo {
			msg = p.paint(p.statusColor(map[string]string{engine.LevelError: string(runnel.RunFailed), engine.LevelWarn: string(runnel.RunPartial)}[e.Level]), msg)
		}
		fmt.Fprintf(p.w, "%s %s\n", p.paint(cCyan, prefix), msg)
	case engine.EventStep:
		switch {
		case e.StepStatus == runnel.StepRunning:
			fmt.Fprintf(p.w, "%s %s\n", p.paint(cCyan, "["+e.JobName+"]"), p.paint(cDim, "▶ "+e.StepName))
		case e.StepStatus.Terminal():
			line := fmt.Sprintf("%s %s", symbol(string(e.StepStatus)), e.StepName)
			if e.StepStatus != runnel.StepSuccess {
				line += " (" + string(e.StepStatus)
				if e.ExitCode != nil && *e.ExitCode != 0 {
					line += fmt.Sprintf(", exit code %d", *e.ExitCode)
				}
				line += ")"
			}
			fmt.Fprintf(p.w, "%s %s\n", p.paint(cCyan, "["+e.JobName+"]"), p.paint(p.statusColor(string(e.StepStatus)), line))
		}
		p.w.Flush()
	case engine.EventJob:
		if e.JobStatus.Terminal() || e.Reason != "" {
			line := fmt.Sprintf("%s job %s", symbol(string(e.JobStatus)), e.JobStatus)
			if e.Reason != "" {
				line += ": " + e.Reason
			}
			fmt.Fprintf(p.w, "%s %s\n", p.paint(cCyan, "["+e.JobName+"]"), p.paint(p.statusColor(string(e.JobStatus)), line))
		}
		p.w.Flush()
	}
}

func symbol(status string) string {
	switch status { // a run's, a job's or a step's
	case string(runnel.StepSuccess):
		return "✓"
	case string(runnel.StepFailed), string(runnel.StepTimeout):
		return "✗"
	case string(runnel.StepSkipped):
		return "○"
	case string(runnel.StepCancelled):
		return "⊘"
	}
	return "•"
}

func (p *textPrinter) Summary(r engine.RunResult) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintln(p.w)
	tw := tabwriter.NewWriter(p.w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STAGE\tJOB\tSTEP\tSTATUS\tDURATION")
	for _, j := range r.Jobs {
		status := string(j.Status)
		if j.Attempts > 1 {
			status += fmt.Sprintf(" (%d attempts)", j.Attempts)
		}
		fmt.Fprintf(tw, "%s\t%s\t\t%s\t%s\n", j.Job.Stage, j.Job.Name, status, fmtDur(dur(j.Started, j.Ended)))
		for _, s := range j.Steps {
			st := string(s.Status)
			if s.ExitCode != nil && *s.ExitCode != 0 {
				st += fmt.Sprintf(" (exit %d)", *s.ExitCode)
			}
			fmt.Fprintf(tw, "\t\t%s\t%s\t%s\n", s.Name, st, fmtDur(dur(s.Started, s.Ended)))
		}
	}
	tw.Flush()
	fmt.Fprintf(p.w, "\nrun %s in %s\n", p.paint(p.statusColor(string(r.Status)), strings.ToUpper(string(r.Status))), fmtDur(r.Ended.Sub(r.Started)))
	p.w.Flush()
}

func fmtDur(d time.Duration) string {
	switch {
	case d == 0:
		return "-"
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(10 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}
