package cron

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/spec"
	"github.com/runnel-ci/runnel/internal/store"
)

// PipelineKey is the schedule key of a pipeline's flat cron fields
// (triggerCronExpression, triggerTimezone); a head spec's cron trigger is
// keyed by its index in triggers ("0", "1", …).
const PipelineKey = "pipeline"

// Entry is one cron schedule of a pipeline.
type Entry struct {
	PipelineID string
	// Key is the trigger's index in the head spec, or PipelineKey.
	Key      string
	Schedule *Schedule
	// Variables are the trigger's variables (none for the flat fields).
	Variables map[string]string
}

// EntryError is a schedule that cannot be evaluated (validated on save, so
// only a zone database that changed since could cause it).
type EntryError struct {
	PipelineID string
	Key        string
	Err        error
}

func (e *EntryError) Error() string {
	return fmt.Sprintf("cron schedule %s of pipeline %s: %v", e.Key, e.PipelineID, e.Err)
}

func (e *EntryError) Unwrap() error { return e.Err }

// SpecTriggers decodes the triggers of a stored spec (its canonical JSON).
func SpecTriggers(raw json.RawMessage) ([]spec.Trigger, error) {
	var v struct {
		Triggers []spec.Trigger `json:"triggers"`
	}
	if len(raw) == 0 {
		return nil, nil
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, fmt.Errorf("decode the spec's triggers: %w", err)
	}
	return v.Triggers, nil
}

// PipelineSchedules returns the pipeline's cron schedules: the head spec's
// triggers of type cron (triggers, in order) and then the flat fields. A
// schedule that does not parse is reported in errs and left out.
//
// A deactivated pipeline has none: cron starts no runs of it.
func PipelineSchedules(p *store.Pipeline, triggers []spec.Trigger) (entries []Entry, errs []error) {
	if p.Deactivated {
		return nil, nil
	}
	add := func(key, expr, tz string, vars map[string]string) {
		s, err := Parse(expr, tz)
		if err != nil {
			errs = append(errs, &EntryError{PipelineID: p.ID, Key: key, Err: err})
			return
		}
		entries = append(entries, Entry{PipelineID: p.ID, Key: key, Schedule: s, Variables: vars})
	}
	for i, t := range triggers {
		if t.Type == runnel.TriggerCron && t.Cron != "" {
			add(strconv.Itoa(i), t.Cron, t.Timezone, t.Variables)
		}
	}
	if p.TriggerCronExpression != "" {
		add(PipelineKey, p.TriggerCronExpression, p.TriggerTimezone, nil)
	}
	return entries, errs
}

// NextStart returns the earliest tick after now over entries, zero when
// there is none.
func NextStart(entries []Entry, now time.Time) time.Time {
	var next time.Time
	for _, e := range entries {
		if t := e.Schedule.Next(now); !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	return next
}

// RequestID is the run request id of a schedule's tick. Every replica
// computes the same one, and the store keeps one run per request id and
// pipeline: that is what makes a tick start exactly one run.
func RequestID(pipelineID, key string, tick time.Time) string {
	return "cron:" + pipelineID + ":" + key + ":" + strconv.FormatInt(tick.Unix(), 10)
}
