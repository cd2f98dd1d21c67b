package access

import (
	"errors"
	"strings"
	"testing"

	"github.com/runnel-ci/runnel"
)

func TestParseRule(t *testing.T) {
	for _, tt := range []struct {
		in    string
		want  Rule
		error string
	}{
		{"public", Rule{Kind: "public"}, ""},
		{"signed-in", Rule{Kind: "signed-in"}, ""},
		{"admin", Rule{Kind: "admin"}, ""},
		{"body", Rule{Kind: "body"}, ""},
		{"viewer:pipelineId", Rule{Kind: "project", Role: Viewer, Param: "pipelineId"}, ""},
		{"owner:projectId", Rule{Kind: "project", Role: Owner, Param: "projectId"}, ""},
		{"developer:build_id", Rule{Kind: "project", Role: Developer, Param: "build_id"}, ""},
		{"", Rule{}, "want public"},
		{"viewer", Rule{}, "ROLE:PARAM"},
		{"boss:pipelineId", Rule{}, "ROLE one of viewer, developer, maintainer, owner"},
		{"viewer:agentId", Rule{}, "PARAM one of"},
	} {
		got, err := ParseRule(tt.in)
		if tt.error != "" {
			if err == nil || !strings.Contains(err.Error(), tt.error) {
				t.Errorf("ParseRule(%q) = %v, %v; want an error containing %q", tt.in, got, err, tt.error)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseRule(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
}

func TestRoles(t *testing.T) {
	for i, name := range RoleNames {
		r, ok := ParseRole(name)
		if !ok || r != Role(i+1) || r.String() != name {
			t.Errorf("ParseRole(%q) = %v, %v", name, r, ok)
		}
	}
	if _, ok := ParseRole("admin"); ok {
		t.Error("admin is not a project role")
	}
	if None.String() != "none" || !(Viewer < Developer && Developer < Maintainer && Maintainer < Owner) {
		t.Error("roles are not ordered")
	}
}

func TestJudge(t *testing.T) {
	tg := Target{Noun: "pipeline", ID: "pl_1"}
	for _, tt := range []struct {
		have, need Role
		is         error
		msg        string
	}{
		{Owner, Maintainer, nil, ""},
		{Developer, Developer, nil, ""},
		{None, Viewer, runnel.ErrNotFound, "pipeline pl_1 not found"},
		{None, Owner, runnel.ErrNotFound, "pipeline pl_1 not found"},
		{Viewer, Developer, runnel.ErrForbidden, "triggering it needs the developer role in project web; you are a viewer there"},
		{Maintainer, Owner, runnel.ErrForbidden, "needs the owner role"},
	} {
		err := Judge(tt.have, tt.need, "web", tg, "triggering it")
		if tt.is == nil {
			if err != nil {
				t.Errorf("Judge(%v, %v) = %v", tt.have, tt.need, err)
			}
			continue
		}
		if !errors.Is(err, tt.is) || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("Judge(%v, %v) = %v; want %v saying %q", tt.have, tt.need, err, tt.is, tt.msg)
		}
	}
}

func TestView(t *testing.T) {
	v := View{Roles: map[string]Role{"web": Developer, "ops": Viewer}}
	if !v.Sees("web") || v.Sees("shop") || v.Role("web") != Developer || v.Role("shop") != None {
		t.Errorf("view %+v", v)
	}
	if got := strings.Join(v.Projects(), ","); got != "ops,web" {
		t.Errorf("Projects() = %s", got)
	}
	all := View{All: true}
	if !all.Sees("any") || all.Role("any") != Owner || all.Projects() != nil {
		t.Errorf("an admin's view %+v", all)
	}
}
