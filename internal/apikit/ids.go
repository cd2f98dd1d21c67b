package apikit

import (
	"net/http"
	"strings"
)

// IDKind describes one kind of id, for the messages about it.
type IDKind struct {
	Param  string // path parameter name
	Prefix string // "pl_"
	Noun   string // "pipeline"
}

// PathID returns the path parameter of kind k from r, checked (a 400 naming
// the parameter and the shape of the id otherwise).
func PathID(r *http.Request, k IDKind) (string, error) {
	id := r.PathValue(k.Param)
	if !IsID(id, k.Prefix) {
		article := "a"
		if strings.ContainsRune("aeio", rune(k.Noun[0])) { // "a user"
			article = "an"
		}
		return "", Errorf(http.StatusBadRequest,
			"path parameter %s: %q is not %s %s id; %s ids are %s followed by 10 to 40 lowercase letters and digits",
			k.Param, id, article, k.Noun, k.Noun, k.Prefix)
	}
	return id, nil
}
