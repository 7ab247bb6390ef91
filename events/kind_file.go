package events

import (
	"fmt"
	"path"
	"strconv"
)

// FileSpec is a file with inline content. Path is absolute; the agent roots it
// under its --root.
type FileSpec struct {
	Path    string `json:"path"`
	Content string `json:"content"`
	Mode    string `json:"mode,omitempty"` // octal, default 0644
	Owner   string `json:"owner,omitempty"`
	Group   string `json:"group,omitempty"`
}

// KindFile is the manifest key of a file resource.
const KindFile = "file"

var fileKind = declare(kindSpec[FileSpec]{
	name:     KindFile,
	field:    func(r *Resource) **FileSpec { return &r.File },
	validate: validateFile,
	fast: func(b []byte, i int, x *FileSpec) (int, bool) {
		s := scan{b: b, i: i}
		ok := s.fileSpec(x)
		return s.i, ok
	},
	same: func(x, y *FileSpec) bool { return *x == *y },
	sample: func(id string, version int) *FileSpec {
		return &FileSpec{Path: fmt.Sprintf("/etc/fleet/%s.conf", id), Content: fmt.Sprintf("version=%d\n", version), Mode: "0644"}
	},
})

// ModeOrDefault returns the file mode (validated by ParseManifest), 0644 if unset.
func (f FileSpec) ModeOrDefault() uint32 {
	if m, err := strconv.ParseUint(f.Mode, 8, 32); err == nil && f.Mode != "" {
		return uint32(m)
	}
	return 0o644
}

// validateFile: an acceptable absolute path that no other resource of the
// manifest has, an octal mode, user and group names.
func validateFile(f *FileSpec, c *specCheck) {
	if msg := checkPath(f.Path); msg != "" {
		c.bad("file.path", "%q %s", f.Path, msg)
	} else if j, dup := c.paths[path.Clean(f.Path)]; dup {
		c.bad("file.path", "%q is also the path of resources[%d]: one resource per file", f.Path, j)
	} else {
		c.paths[path.Clean(f.Path)] = c.i
	}
	if f.Mode != "" && !modePattern.MatchString(f.Mode) {
		c.bad("file.mode", "%q must be an octal mode from 0000 to 7777, such as \"0644\"", f.Mode)
	}
	if f.Owner != "" && !userPattern.MatchString(f.Owner) {
		c.bad("file.owner", "%q must be a user name or a numeric uid", f.Owner)
	}
	if f.Group != "" && !userPattern.MatchString(f.Group) {
		c.bad("file.group", "%q must be a group name or a numeric gid", f.Group)
	}
}

func (s *scan) fileSpec(f *FileSpec) bool {
	return s.object(func(key []byte) bool {
		var ok bool
		switch string(key) {
		case "path":
			f.Path, ok = s.text()
		case "content":
			f.Content, ok = s.text()
		case "mode":
			f.Mode, ok = s.text()
		case "owner":
			f.Owner, ok = s.text()
		case "group":
			f.Group, ok = s.text()
		}
		return ok
	})
}
