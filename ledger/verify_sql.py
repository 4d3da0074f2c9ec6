"""The server-side filter of `ledger.verify.verify_tenant`: one range of a tenant's sequence checked in SQL.

The canonical bytes of encoding 1 have a fixed layout, keys sorted (see `ledger.canonical`):

    {"data":D,"effective_us":E,"idempotency_key":K,"metadata":M,"recorded_us":R,...,"type":Y,"v":1}
    ^prefix  ^D ^-------------------- middle -----------------^ M ^---------- suffix -------------^

The middle and the suffix hold only scalars, so they are rebuilt from the columns as bytes and compared
byte for byte; only D and M are parsed (as jsonb) and compared with the `data` and `metadata` columns.
That is what makes the filter cheap: parsing the whole document and building one from the columns cost
twice as much per row. D ends where the middle first occurs; a wrong split (the middle's bytes inside
D) can only make D or M fail to parse or compare unequal, never accept bytes the reference refuses:
a D that parses on its own is a complete value, so decoding the whole document gives the same D, the
same scalars and the same M.

Compared with the reference (`json.loads` of the bytes, `==` against the columns), this filter is at
least as strict: scalars must be byte-identical in their canonical form (the reference also accepts
`3.0` for 3 or `true` for 1), jsonb equality is exact (numbers as decimals, the reference parses
decimals exactly too), a byte sequence that is not UTF-8 or not JSON makes the server raise. A range
that does not pass wholesale goes to the reference, which decides and writes the report.

The subqueries are fenced (`OFFSET 0`) so each rebuilt piece is computed once per row, not once per
use, and keep `ORDER BY seq` so the window reads the index order without a sort; the window (links,
gapless sequence) sees only narrow rows.
"""
from __future__ import annotations

# $1 tenant, $2 the range's lower bound (exclusive), $3 its upper bound (inclusive), $4 the recorded
# head's sequence (NULL: none), $5 the encoding. Returns how many rows, the first that fails (NULL:
# none), the first row's prev_hash (linked by the caller to the previous range), the last row's hash
# and the hash at the recorded head's sequence if the range holds it.
CHECK_RANGE = """
SELECT count(*) AS n, min(seq) FILTER (WHERE ok IS NOT TRUE) AS bad,
       string_agg(prev_hash, ''::bytea) FILTER (WHERE seq = $2 + 1) AS first_prev,
       string_agg(hash, ''::bytea) FILTER (WHERE seq = $3) AS last_hash,
       string_agg(hash, ''::bytea) FILTER (WHERE seq = $4) AS mark_hash
FROM (
  SELECT seq, prev_hash, hash,
    (seq = $2 + row_number() OVER w AND prev_hash = coalesce(lag(hash) OVER w, prev_hash) AND row_ok) AS ok
  FROM (
   SELECT seq, prev_hash, hash,
    (hash = sha256(prev_hash || canonical)
     AND encoding = $5
     AND substr(canonical, 1, 8) = '\\x7b2264617461223a'::bytea              -- {"data":
     AND substr(canonical, tail + 1) = suffix
     AND convert_from(substr(canonical, 9, d_end - 9), 'UTF8')::jsonb = data
     AND convert_from(substr(canonical, d_end + octet_length(middle), tail - d_end - octet_length(middle) + 1),
                      'UTF8')::jsonb = metadata) AS row_ok
  FROM (
    SELECT *, position(middle IN canonical) AS d_end, octet_length(canonical) - octet_length(suffix) AS tail
    FROM (
      SELECT seq, prev_hash, hash, encoding, canonical, data, metadata,
        convert_to(',"effective_us":' || (extract(epoch FROM effective_at) * 1000000)::int8::text
                   || ',"idempotency_key":' || coalesce(to_json(idempotency_key)::text, 'null')
                   || ',"metadata":', 'UTF8') AS middle,
        convert_to(',"recorded_us":' || (extract(epoch FROM recorded_at) * 1000000)::int8::text
                   || ',"schema_version":' || schema_version::text || ',"seq":' || seq::text
                   || ',"stream":' || to_json(stream)::text || ',"stream_version":' || stream_version::text
                   || ',"tenant":' || to_json(tenant_id)::text || ',"type":' || to_json(type)::text
                   || ',"v":' || encoding::text || '}', 'UTF8') AS suffix
      FROM events WHERE tenant_id = $1 AND seq > $2 AND seq <= $3 ORDER BY seq OFFSET 0
    ) rebuilt ORDER BY seq OFFSET 0
   ) located ORDER BY seq OFFSET 0
  ) row_checked
  WINDOW w AS (ORDER BY seq)
) checked
"""

# Each range planned for its own bounds (a generic plan may sort the whole tenant), and no JIT compile
# per range for a query whose cost is all in the per-row functions.
SESSION = "SET LOCAL plan_cache_mode = force_custom_plan; SET LOCAL jit = off"
