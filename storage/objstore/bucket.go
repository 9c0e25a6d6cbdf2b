package objstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"path"
	"strings"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// bucket is a prefix of one S3 bucket.
type bucket struct {
	c      *minio.Client
	name   string
	prefix string
}

func openBucket(ctx context.Context, cfg Config) (*bucket, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	host, secure := cfg.Endpoint, true
	if strings.Contains(host, "://") {
		u, err := url.Parse(host)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("%w: endpoint %q: want host:port or http(s)://host:port", ErrConfig, cfg.Endpoint)
		}
		host, secure = u.Host, u.Scheme == "https"
	}
	opts := &minio.Options{Secure: secure, Region: cfg.Region, MaxRetries: 1}
	if cfg.AccessKey != "" {
		opts.Creds = credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, "")
	} else {
		opts.Creds = credentials.New(&credentials.Static{})
	}
	if cfg.PathStyle {
		opts.BucketLookup = minio.BucketLookupPath
	}
	c, err := minio.New(host, opts)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	b := &bucket{c: c, name: cfg.Bucket, prefix: cfg.Prefix}
	if err := b.check(ctx); err != nil {
		return nil, err
	}
	return b, nil
}

// check reports whether the bucket exists and answers.
func (b *bucket) check(ctx context.Context) error {
	ok, err := b.c.BucketExists(ctx, b.name)
	if err != nil {
		switch r := minio.ToErrorResponse(err); {
		case r.Code == "NoSuchBucket":
			return fmt.Errorf("%w: %s", ErrNoBucket, b.name)
		case r.StatusCode == 403 || r.Code == "AccessDenied" || r.Code == "InvalidAccessKeyId" || r.Code == "SignatureDoesNotMatch":
			return fmt.Errorf("%w: bucket %s: %w (check the credentials)", ErrAccessDenied, b.name, err)
		}
		if minio.ToErrorResponse(err).StatusCode == 0 {
			return fmt.Errorf("%w: %s: %w", ErrUnreachable, b.c.EndpointURL().Host, err)
		}
		return fmt.Errorf("bucket %s: %w", b.name, err)
	}
	if !ok {
		return fmt.Errorf("%w: %s", ErrNoBucket, b.name)
	}
	return nil
}

func (b *bucket) key(parts ...string) string {
	return path.Join(append([]string{b.prefix}, parts...)...)
}

// size returns the size of the object under key, or -1 when there is none.
func (b *bucket) size(ctx context.Context, key string) (int64, error) {
	info, err := b.c.StatObject(ctx, b.name, key, minio.StatObjectOptions{})
	if err != nil {
		if r := minio.ToErrorResponse(err); r.Code == "NoSuchKey" || r.StatusCode == 404 {
			return -1, nil
		}
		return 0, err
	}
	return info.Size, nil
}

func (b *bucket) putFile(ctx context.Context, key, file string) error {
	_, err := b.c.FPutObject(ctx, b.name, key, file, minio.PutObjectOptions{})
	return err
}

func (b *bucket) put(ctx context.Context, key string, r io.Reader, size int64) error {
	_, err := b.c.PutObject(ctx, b.name, key, r, size, minio.PutObjectOptions{ContentType: "application/json"})
	return err
}

// putNew puts an object only if there is none under key (If-None-Match:
// *); errExists if there is one.
func (b *bucket) putNew(ctx context.Context, key string, r io.Reader, size int64) error {
	opts := minio.PutObjectOptions{ContentType: "application/json"}
	opts.SetMatchETagExcept("*")
	_, err := b.c.PutObject(ctx, b.name, key, r, size, opts)
	if r := minio.ToErrorResponse(err); r.StatusCode == 412 || r.Code == "PreconditionFailed" {
		return errExists
	}
	return err
}

func (b *bucket) getFile(ctx context.Context, key, file string) error {
	return b.c.FGetObject(ctx, b.name, key, file, minio.GetObjectOptions{})
}

// get returns the object under key; errNoKey when there is none.
func (b *bucket) get(ctx context.Context, key string) ([]byte, error) {
	o, err := b.c.GetObject(ctx, b.name, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, err
	}
	defer o.Close()
	data, err := io.ReadAll(o)
	if err != nil {
		if r := minio.ToErrorResponse(err); r.Code == "NoSuchKey" || r.StatusCode == 404 {
			return nil, errNoKey
		}
		return nil, err
	}
	return data, nil
}

var (
	errNoKey  = errors.New("no such key")
	errExists = errors.New("key exists")
)
