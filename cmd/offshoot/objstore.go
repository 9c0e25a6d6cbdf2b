package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/offshootdb/offshoot/experiments"
	"github.com/offshootdb/offshoot/storage"
	"github.com/offshootdb/offshoot/storage/objstore"
)

// objectStoreConfig is the object storage tier (storage/objstore). Off
// unless URL is set. Credentials come from the environment or a file (see
// objstore.Config.LoadCredentials), never from flags.
type objectStoreConfig struct {
	// URL is s3://bucket[/prefix]. Env OFFSHOOT_S3_URL.
	URL string `yaml:"url,omitempty"`
	// Endpoint is host:port or http(s)://host:port. Env OFFSHOOT_S3_ENDPOINT.
	Endpoint string `yaml:"endpoint,omitempty"`
	// Region. Default us-east-1. Env OFFSHOOT_S3_REGION.
	Region string `yaml:"region,omitempty"`
	// PathStyle addresses the bucket in the URL path. Default false.
	PathStyle bool `yaml:"path_style,omitempty"`
	// Interval between upload rounds: the recovery point. Default 10s.
	Interval time.Duration `yaml:"interval,omitempty"`
	// Keep is how long past uploads stay restorable. Default 0: all.
	Keep time.Duration `yaml:"keep,omitempty"`
}

// fromEnv fills what the environment sets and c does not.
func (c *objectStoreConfig) fromEnv() {
	if c.Endpoint == "" {
		c.Endpoint = os.Getenv("OFFSHOOT_S3_ENDPOINT")
	}
	if c.Region == "" {
		c.Region = os.Getenv("OFFSHOOT_S3_REGION")
	}
	if os.Getenv("OFFSHOOT_S3_PATH_STYLE") == "true" {
		c.PathStyle = true
	}
}

func (c objectStoreConfig) objstore() (objstore.Config, error) {
	bucket, prefix, err := objstore.ParseURL(c.URL)
	if err != nil {
		return objstore.Config{}, err
	}
	oc := objstore.Config{Endpoint: c.Endpoint, Bucket: bucket, Prefix: prefix, Region: c.Region,
		PathStyle: c.PathStyle, Interval: c.Interval, Keep: c.Keep}
	if err := oc.LoadCredentials(); err != nil {
		return objstore.Config{}, err
	}
	return oc, nil
}

func addObjectStoreFlags(cmd *cobra.Command, c *objectStoreConfig) {
	f := cmd.Flags()
	// Defaults stay empty: the environment is read in resolve (restore,
	// which has no config file, reads it in objstore), so that the order
	// defaults < file < environment < flags holds for these too.
	f.StringVar(&c.Endpoint, "s3-endpoint", "", "S3-compatible endpoint, host:port or http(s)://host:port (env OFFSHOOT_S3_ENDPOINT); credentials from OFFSHOOT_S3_ACCESS_KEY/OFFSHOOT_S3_SECRET_KEY, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or OFFSHOOT_S3_CREDENTIALS_FILE")
	f.StringVar(&c.Region, "s3-region", "", "S3 region (default us-east-1; env OFFSHOOT_S3_REGION)")
	f.BoolVar(&c.PathStyle, "s3-path-style", false, "path-style bucket addressing (env OFFSHOOT_S3_PATH_STYLE=true)")
}

// startUploader starts the object storage tier when configured: it checks
// the bucket (an unreachable endpoint or a missing bucket stops serve) and
// uploads the store and the control database every interval.
func (a *app) startUploader(ctx context.Context, st *storage.Store, svc *experiments.Service, reg *prometheus.Registry) (*objstore.Uploader, error) {
	c := a.cfg.ObjectStore
	if c.URL == "" {
		return nil, nil
	}
	oc, err := c.objstore()
	if err != nil {
		return nil, err
	}
	sources := []objstore.Source{
		// The control database first: the store checkpointed after it
		// holds every timeline its records name.
		{Name: "control", Checkpoint: svc.CheckpointControl, Version: svc.ControlVersion},
		{Name: "store", Checkpoint: st.Checkpoint, Version: st.Version},
	}
	u, err := objstore.New(ctx, oc, sources, filepath.Join(a.cfg.DataDir, "objstore"), a.log)
	if errors.Is(err, objstore.ErrPrefixTaken) {
		return nil, &exitError{code: exitConflict, err: fmt.Errorf("object store: %w (--s3 s3://%s/<another prefix>)", err, oc.Bucket)}
	}
	if err != nil {
		return nil, fmt.Errorf("object store: %w", err)
	}
	reg.MustRegister(u.Collector())
	u.Start()
	a.log.Info("uploading to object store", "url", c.URL, "endpoint", oc.Endpoint, "interval", oc.Interval)
	return u, nil
}

// restoreError gives an error of restore the exit code the README
// documents for its kind.
func restoreError(err error) error {
	code := 1
	switch {
	case errors.Is(err, objstore.ErrConfig):
		code = exitBadInput
	case errors.Is(err, objstore.ErrUnreachable):
		code = exitNoServer
	case errors.Is(err, objstore.ErrAccessDenied):
		code = exitAuth
	case errors.Is(err, objstore.ErrNoBucket), errors.Is(err, objstore.ErrNoBackup), errors.Is(err, objstore.ErrNoGeneration):
		code = exitNotFound
	case errors.Is(err, objstore.ErrNotEmpty):
		code = exitConflict
	}
	return &exitError{code: code, err: err}
}

func init() {
	subcommands = append(subcommands, func(a *app) *cobra.Command {
		var c objectStoreConfig
		var gen uint64
		var at string
		var list bool
		cmd := &cobra.Command{
			Use:   "restore --from s3://bucket/prefix --data-dir DIR [--generation N | --at TIME] | --list",
			Short: "Restore a data dir from the object storage tier (the last upload, or an older one)",
			Long: "Restore brings back every project, branch, snapshot, key, audit record and experiment run as of one\n" +
				"complete upload round into an empty (or new) data dir; `offshoot serve` then runs on it. The last\n" +
				"round by default; --generation N or --at TIME (RFC 3339: the newest at or before it) go back as far\n" +
				"as the bucket keeps (serve --s3-keep). --list shows the generations the bucket holds.",
			Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				if c.URL == "" {
					return &exitError{code: 2, err: fmt.Errorf("restore: --from s3://bucket/prefix is required")}
				}
				// The uploader of the restored dir keeps its state here (startUploader).
				opt := objstore.RestoreOptions{Gen: gen, StateDir: filepath.Join(a.cfg.DataDir, "objstore")}
				if at != "" {
					t, err := time.Parse(time.RFC3339, at)
					if err != nil {
						return &exitError{code: 2, err: fmt.Errorf("restore: --at %q: want RFC 3339, e.g. 2026-12-04T06:00:00Z", at)}
					}
					opt.At = t
				}
				if gen != 0 && at != "" {
					return &exitError{code: 2, err: fmt.Errorf("restore: give --generation or --at, not both")}
				}
				c.fromEnv()
				oc, err := c.objstore()
				if err != nil {
					return &exitError{code: 2, err: err}
				}
				if list {
					gens, err := objstore.Generations(cmd.Context(), oc)
					if err != nil {
						return restoreError(err)
					}
					if len(gens) == 0 {
						return &exitError{code: exitNotFound, err: fmt.Errorf("%w: nothing to list under %s", objstore.ErrNoBackup, c.URL)}
					}
					tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
					fmt.Fprintln(tw, "GENERATION\tSTATE AS OF\tFILES\tBYTES")
					for _, g := range gens {
						fmt.Fprintf(tw, "%d\t%s\t%d\t%s\n", g.Gen, g.Time.UTC().Format(time.RFC3339), g.Files, humanBytes(uint64(g.Bytes)))
					}
					return tw.Flush()
				}
				// SIGINT and SIGTERM cancel the download: Restore then
				// empties the data dir before restore exits.
				ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
				defer stop()
				r, err := objstore.Restore(ctx, oc, a.cfg.DataDir, opt)
				if ctx.Err() != nil && cmd.Context().Err() == nil {
					return fmt.Errorf("restore interrupted; %s was emptied: %w", a.cfg.DataDir, err)
				}
				if err != nil {
					return restoreError(err)
				}
				fmt.Fprintf(a.stdout, "restored generation %d (uploaded state as of %s): %d files, %d bytes into %s\n",
					r.Gen, r.Time.UTC().Format(time.RFC3339), r.Files, r.Bytes, a.cfg.DataDir)
				return nil
			},
		}
		cmd.Flags().StringVar(&c.URL, "from", "", "s3://bucket[/prefix] to restore from")
		cmd.Flags().Uint64Var(&gen, "generation", 0, "restore this generation (see --list) instead of the last")
		cmd.Flags().StringVar(&at, "at", "", "restore the newest generation checkpointed at or before this time (RFC 3339)")
		cmd.Flags().BoolVar(&list, "list", false, "list the generations the bucket holds and exit")
		addObjectStoreFlags(cmd, &c)
		return cmd
	})
}
