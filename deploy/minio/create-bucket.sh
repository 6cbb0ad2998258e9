#!/bin/sh
# graphrunner's blob bucket, and a MinIO user that may use that bucket only; then proves
# the user can write, read and delete there, so no worker starts with credentials that fail.
set -eu
: "${MINIO_URL:?set MINIO_URL}" "${BUCKET:?set BUCKET}"
: "${MINIO_ROOT_USER:?set MINIO_ROOT_USER}" "${MINIO_ROOT_PASSWORD:?set MINIO_ROOT_PASSWORD}"
: "${S3_ACCESS_KEY:?set S3_ACCESS_KEY}" "${S3_SECRET_KEY:?set S3_SECRET_KEY}"

mc alias set admin "$MINIO_URL" "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD" >/dev/null
mc mb --ignore-existing "admin/$BUCKET"

policy=/tmp/graphrunner-blobs.json
cat >"$policy" <<JSON
{
  "Version": "2012-10-17",
  "Statement": [
    {"Effect": "Allow",
     "Action": ["s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"],
     "Resource": ["arn:aws:s3:::$BUCKET"]},
    {"Effect": "Allow",
     "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject",
                "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
     "Resource": ["arn:aws:s3:::$BUCKET/*"]}
  ]
}
JSON
mc admin policy create admin graphrunner-blobs "$policy"
mc admin user add admin "$S3_ACCESS_KEY" "$S3_SECRET_KEY"
# Refused when the policy is attached already (a restart): the check below is what counts.
mc admin policy attach admin graphrunner-blobs --user "$S3_ACCESS_KEY" || true

mc alias set app "$MINIO_URL" "$S3_ACCESS_KEY" "$S3_SECRET_KEY" >/dev/null
probe="app/$BUCKET/.graphrunner-init-probe"
echo ok | mc pipe "$probe" >/dev/null
mc cat "$probe" >/dev/null
mc rm "$probe" >/dev/null
echo "bucket $BUCKET ready; user $S3_ACCESS_KEY can write it"
