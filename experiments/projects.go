package experiments

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/offshootdb/offshoot/compute"
	"github.com/offshootdb/offshoot/experiments/internal/controldb"
	"github.com/offshootdb/offshoot/storage"
)

// Project is a project as listed and described.
type Project struct {
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
	// Branches is the number of branches (main included).
	Branches int `json:"branches"`
	// Default is true for the project the proxy assumes when a connection
	// names none.
	Default bool `json:"default"`
}

// projectRecord is what the control DB keeps per project: the superuser
// password, which the storage catalog has no field for.
type projectRecord struct {
	Password  string    `json:"password"`
	CreatedAt time.Time `json:"created_at"`
}

func projectKey(name string) []byte { return []byte("project/" + name) }

func randomPassword() (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// CreateProject creates a project: a storage project whose main branch
// gets a fresh Postgres cluster with pgvector (compute.InitProject) and a
// generated superuser password, kept in the control DB. Admin only.
func (s *Service) CreateProject(ctx context.Context, name string) (*Project, error) {
	var out *Project
	err := s.audited(ctx, "project.create", name, "", func() error {
		if err := s.authorize(ctx, RoleAdmin, "", ""); err != nil {
			return err
		}
		st, err := s.storeOr()
		if err != nil {
			return err
		}
		if err := checkStoreName("name", name); err != nil {
			return err
		}
		p, _, err := st.CreateProject(name)
		if err != nil {
			return storeErr(err)
		}
		pw, err := randomPassword()
		if err != nil {
			return fmt.Errorf("create project: %w", err)
		}
		h, err := st.OpenHead(name, "main")
		if err != nil {
			return storeErr(err)
		}
		mnt, err := os.MkdirTemp(s.cfg.InitDir, "init-")
		if err == nil {
			err = os.Chmod(mnt, 0o755)
		}
		if err != nil {
			h.Close()
			return fmt.Errorf("create project: %w", err)
		}
		defer os.Remove(mnt)
		_, ierr := compute.InitProject(ctx, h, mnt, compute.InitOptions{Superuser: superuser, Password: pw, Project: name,
			LogFile: filepath.Join(s.cfg.InitDir, "init-"+strings.ReplaceAll(name, "/", "_")+".log")})
		if cerr := h.Close(); ierr == nil && cerr != nil {
			ierr = cerr
		}
		if ierr != nil {
			return fmt.Errorf("create project %s: %w: %w", name, ErrUnavailable, ierr)
		}
		if err := s.withDB(func(db *controldb.DB) error {
			return db.Put(projectKey(name), projectRecord{Password: pw, CreatedAt: p.CreatedAt})
		}); err != nil {
			return err
		}
		out = &Project{Name: name, CreatedAt: p.CreatedAt, Branches: 1, Default: name == s.cfg.DefaultProject}
		return nil
	})
	return out, err
}

// EnsureDefaultProject creates the default project when the store has no
// project at all (the first start on an empty data directory).
func (s *Service) EnsureDefaultProject(ctx context.Context) (created bool, err error) {
	st, err := s.storeOr()
	if err != nil {
		return false, err
	}
	if len(st.Projects()) > 0 {
		return false, nil
	}
	ctx = WithCaller(ctx, Caller{KeyID: "server", Scopes: []Scope{{Role: RoleAdmin}}})
	if _, err := s.CreateProject(ctx, s.cfg.DefaultProject); err != nil {
		return false, err
	}
	return true, nil
}

// canSeeProject reports whether the caller has any scope on project.
func canSeeProject(c Caller, project string) bool {
	for _, sc := range c.Scopes {
		if sc.Role == RoleAdmin || sc.Project == "*" || sc.Project == project {
			return true
		}
	}
	return false
}

// projectCaller returns the caller when it has some scope on project.
func (s *Service) projectCaller(ctx context.Context, project string) (Caller, error) {
	c, ok := CallerFrom(ctx)
	if !ok {
		return Caller{}, fmt.Errorf("no caller: %w", ErrUnauthenticated)
	}
	if !canSeeProject(c, project) {
		return Caller{}, fmt.Errorf("key %s has no scope on project %s: %w", c.KeyID, project, ErrForbidden)
	}
	return c, nil
}

// ListProjects lists the projects the caller has a scope on, by name.
func (s *Service) ListProjects(ctx context.Context) ([]Project, error) {
	c, ok := CallerFrom(ctx)
	if !ok {
		return nil, fmt.Errorf("no caller: %w", ErrUnauthenticated)
	}
	st, err := s.storeOr()
	if err != nil {
		return nil, err
	}
	out := []Project{}
	for _, p := range st.Projects() {
		if !canSeeProject(c, p.Name) {
			continue
		}
		bs, err := st.Branches(p.Name)
		if err != nil {
			return nil, storeErr(err)
		}
		out = append(out, Project{Name: p.Name, CreatedAt: p.CreatedAt, Branches: len(bs), Default: p.Name == s.cfg.DefaultProject})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// GetProject describes a project.
func (s *Service) GetProject(ctx context.Context, name string) (*Project, error) {
	if _, err := s.projectCaller(ctx, name); err != nil {
		return nil, s.refused(ctx, "project.get", name, err)
	}
	st, err := s.storeOr()
	if err != nil {
		return nil, err
	}
	p, err := st.Project(name)
	if err != nil {
		return nil, storeErr(err)
	}
	bs, err := st.Branches(name)
	if err != nil {
		return nil, storeErr(err)
	}
	return &Project{Name: p.Name, CreatedAt: p.CreatedAt, Branches: len(bs), Default: p.Name == s.cfg.DefaultProject}, nil
}

// DeleteProject deletes a project: its endpoints are stopped, then storage
// drops every branch, snapshot and timeline of it in one step, and its
// stored superuser password is removed from the control DB. Without force
// it is refused (ErrConflict) when the project has branches other than
// main, a protected branch, or is the server's default project; with force
// all of them go. A branch whose endpoint is restarted by a connection
// between the stop and the deletion makes the call fail with ErrConflict
// (busy); nothing is deleted then. Unknown project: ErrNotFound. Admin only.
func (s *Service) DeleteProject(ctx context.Context, name string, force bool) error {
	return s.audited(ctx, "project.delete", name, fmt.Sprintf("force=%t", force), func() error {
		if err := s.authorize(ctx, RoleAdmin, "", ""); err != nil {
			return err
		}
		rec, rerr := s.replicaRecord(name)
		if err := s.deleteProject(ctx, name, force); err != nil {
			return err
		}
		if rerr == nil {
			s.forgetReplica(ctx, name, rec)
		}
		return nil
	})
}

// deleteProject is DeleteProject after authorization; a replica project
// stops being followed first.
func (s *Service) deleteProject(ctx context.Context, name string, force bool) error {
	st, err := s.storeOr()
	if err != nil {
		return err
	}
	if err := checkStoreName("name", name); err != nil {
		return err
	}
	bs, err := st.Branches(name)
	if err != nil {
		return storeErr(err)
	}
	if !force {
		if name == s.cfg.DefaultProject {
			return fmt.Errorf("project %s is the default project; pass force to delete it: %w", name, ErrConflict)
		}
		for _, b := range bs {
			if !s.isMain(name, b) {
				return fmt.Errorf("project %s has %d branches besides main; pass force to delete them all: %w", name, len(bs)-1, ErrConflict)
			}
			if b.Protected {
				return fmt.Errorf("branch %s of project %s is protected; pass force or unprotect it: %w", b.Name, name, ErrConflict)
			}
		}
	}
	s.unfollow(name)
	for _, b := range bs {
		if err := s.stopEndpoint(ctx, name, b.Name, true); err != nil {
			return err
		}
	}
	if err := st.DeleteProject(name, storage.DeleteProjectOptions{Force: force}); err != nil {
		return storeErr(err)
	}
	return s.withDB(func(db *controldb.DB) error {
		if err := deleteMaskRecords(db, name); err != nil {
			return err
		}
		if err := deleteMatRecords(db, name); err != nil {
			return err
		}
		return db.Delete(projectKey(name))
	})
}
