package store

import (
	"context"

	"github.com/jackc/pgx/v5"
)

const metadataDocumentColumns = `url, document, etag, fetched_at, expires_at`

// GetMetadataDocument returns the cached document for url, stale or not:
// the caller revalidates a stale one with its ETag.
func (p *Postgres) GetMetadataDocument(ctx context.Context, url string) (MetadataDocument, error) {
	rows, err := p.pool.Query(ctx, `SELECT `+metadataDocumentColumns+` FROM metadata_documents WHERE url = $1`, url)
	if err != nil {
		return MetadataDocument{}, mapErr(err)
	}
	d, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[MetadataDocument])
	return d, mapErr(err)
}

// PutMetadataDocument stores or replaces the document for d.URL.
func (p *Postgres) PutMetadataDocument(ctx context.Context, d MetadataDocument) error {
	_, err := p.pool.Exec(ctx, `
		INSERT INTO metadata_documents (`+metadataDocumentColumns+`) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (url) DO UPDATE SET
			document = excluded.document, etag = excluded.etag,
			fetched_at = excluded.fetched_at, expires_at = excluded.expires_at`,
		d.URL, d.Document, d.ETag, d.FetchedAt, d.ExpiresAt)
	return mapErr(err)
}
