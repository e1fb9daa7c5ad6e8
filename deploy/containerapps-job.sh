#!/usr/bin/env bash
# Deploys dp-lakehouse as a scheduled Azure Container Apps Job with a managed identity.
#
# Creates (idempotently): a resource group, an ADLS Gen2 storage account with the containers
# bronze / silver / gold, a user-assigned managed identity with least-privilege roles, a Key Vault
# secret for the pseudonym key, a container registry holding the image (built in Azure by
# `az acr build`: no local Docker needed), a Container Apps environment and the job itself.
#
# Usage: deploy/containerapps-job.sh [--dry-run]   with every name from the environment:
#   RESOURCE_GROUP, LOCATION, STORAGE_ACCOUNT, REGISTRY, KEY_VAULT  (required)
#   JOB_NAME=dp-lakehouse  ENVIRONMENT_NAME=dp-lakehouse-env  IDENTITY_NAME=dp-lakehouse-job
#   CRON="17 * * * *" (hourly)  CPU=2.0  MEMORY=4Gi  TIMEOUT_SECONDS=3600  IMAGE_TAG=latest
#   MAINTAIN_CRON="47 3 * * *" (daily: `lakehouse maintain`, a second job on the same image)
#   ANALYSTS_PRINCIPAL_ID  (optional: an Entra ID user/group that may read the gold container only)
set -euo pipefail

DRY_RUN=0
if [[ "${1:-}" == "--dry-run" ]]; then
  DRY_RUN=1
elif [[ $# -gt 0 ]]; then
  sed -n '2,16p' "$0"
  exit 2
fi

require() {
  local name
  for name in "$@"; do
    if [[ -z "${!name:-}" ]]; then
      echo "deploy: set $name (see the header of $0)" >&2
      exit 2
    fi
  done
}
require RESOURCE_GROUP LOCATION STORAGE_ACCOUNT REGISTRY KEY_VAULT

JOB_NAME="${JOB_NAME:-dp-lakehouse}"
ENVIRONMENT_NAME="${ENVIRONMENT_NAME:-dp-lakehouse-env}"
IDENTITY_NAME="${IDENTITY_NAME:-dp-lakehouse-job}"
CRON="${CRON:-17 * * * *}"
MAINTAIN_CRON="${MAINTAIN_CRON:-47 3 * * *}"
CPU="${CPU:-2.0}"
MEMORY="${MEMORY:-4Gi}"
TIMEOUT_SECONDS="${TIMEOUT_SECONDS:-3600}"
IMAGE_TAG="${IMAGE_TAG:-latest}"
ANALYSTS_PRINCIPAL_ID="${ANALYSTS_PRINCIPAL_ID:-}"
REPO_ROOT="$(cd "$(dirname "$0")/.." && pwd)"

# Runs a command, or only prints it with --dry-run. Output that could hold a secret is never echoed.
az_run() {
  if [[ "$DRY_RUN" == 1 ]]; then
    printf 'az'
    printf ' %q' "$@"
    printf '\n'
  else
    az "$@"
  fi
}

# Like az_run, but returns the command's output (a placeholder with --dry-run).
az_value() {
  if [[ "$DRY_RUN" == 1 ]]; then
    az_run "$@" >&2
    echo "<${*: -1}>"
  else
    az "$@"
  fi
}

echo "== resource group, storage (ADLS Gen2), containers" >&2
az_run group create --name "$RESOURCE_GROUP" --location "$LOCATION" --output none
az_run storage account create --name "$STORAGE_ACCOUNT" --resource-group "$RESOURCE_GROUP" \
  --location "$LOCATION" --kind StorageV2 --sku Standard_LRS --hns true \
  --min-tls-version TLS1_2 --allow-blob-public-access false --allow-shared-key-access false --output none
STORAGE_ID=$(az_value storage account show --name "$STORAGE_ACCOUNT" --resource-group "$RESOURCE_GROUP" \
  --query id --output tsv)
for container in bronze silver gold; do
  az_run storage container create --account-name "$STORAGE_ACCOUNT" --name "$container" \
    --auth-mode login --output none
done

echo "== managed identity and least-privilege roles" >&2
az_run identity create --name "$IDENTITY_NAME" --resource-group "$RESOURCE_GROUP" --location "$LOCATION" --output none
IDENTITY_ID=$(az_value identity show --name "$IDENTITY_NAME" --resource-group "$RESOURCE_GROUP" --query id --output tsv)
PRINCIPAL_ID=$(az_value identity show --name "$IDENTITY_NAME" --resource-group "$RESOURCE_GROUP" \
  --query principalId --output tsv)
CLIENT_ID=$(az_value identity show --name "$IDENTITY_NAME" --resource-group "$RESOURCE_GROUP" \
  --query clientId --output tsv)
container_scope() { echo "$STORAGE_ID/blobServices/default/containers/$1"; }
assign() { # role, principal, scope
  az_run role assignment create --assignee-object-id "$2" --assignee-principal-type "${4:-ServicePrincipal}" \
    --role "$1" --scope "$3" --output none
}
assign "Storage Blob Data Reader" "$PRINCIPAL_ID" "$(container_scope bronze)"        # raw events: read only
assign "Storage Blob Data Contributor" "$PRINCIPAL_ID" "$(container_scope silver)"   # rows, checkpoints, lock
assign "Storage Blob Data Contributor" "$PRINCIPAL_ID" "$(container_scope gold)"     # DP aggregates, ledger
if [[ -n "$ANALYSTS_PRINCIPAL_ID" ]]; then
  assign "Storage Blob Data Reader" "$ANALYSTS_PRINCIPAL_ID" "$(container_scope gold)" Group
fi

echo "== pseudonym key in Key Vault (generated once, never printed)" >&2
az_run keyvault create --name "$KEY_VAULT" --resource-group "$RESOURCE_GROUP" --location "$LOCATION" \
  --enable-rbac-authorization true --output none
KEY_VAULT_ID=$(az_value keyvault show --name "$KEY_VAULT" --query id --output tsv)
assign "Key Vault Secrets User" "$PRINCIPAL_ID" "$KEY_VAULT_ID"
if [[ "$DRY_RUN" == 0 ]] && ! az keyvault secret show --vault-name "$KEY_VAULT" --name pseudonym-key --output none 2>/dev/null; then
  az keyvault secret set --vault-name "$KEY_VAULT" --name pseudonym-key \
    --value "$(python3 -c 'import secrets; print(secrets.token_urlsafe(48))')" --output none
fi
SECRET_URI="https://$KEY_VAULT.vault.azure.net/secrets/pseudonym-key"

echo "== image, built in Azure Container Registry" >&2
az_run acr create --name "$REGISTRY" --resource-group "$RESOURCE_GROUP" --location "$LOCATION" --sku Basic \
  --output none
REGISTRY_ID=$(az_value acr show --name "$REGISTRY" --query id --output tsv)
assign "AcrPull" "$PRINCIPAL_ID" "$REGISTRY_ID"
az_run acr build --registry "$REGISTRY" --image "dp-lakehouse:$IMAGE_TAG" "$REPO_ROOT"
IMAGE="$REGISTRY.azurecr.io/dp-lakehouse:$IMAGE_TAG"

echo "== Container Apps environment and the scheduled job" >&2
az_run containerapp env create --name "$ENVIRONMENT_NAME" --resource-group "$RESOURCE_GROUP" \
  --location "$LOCATION" --output none
# One execution per trigger, no retries: an overlapping execution fails fast on the run lease
# (exit 75) and the next schedule picks up whatever is new; the stream checkpoint is the only
# "what was processed" marker, so no trigger function or file-arrival event is needed.
# Two jobs on one image and identity: the hourly run, and a daily `maintain` (compaction and VACUUM;
# it takes the same run lease, so it never overlaps a run).
for job in run maintain; do
  name="$JOB_NAME" cron="$CRON"
  if [[ "$job" == maintain ]]; then name="$JOB_NAME-maintain" cron="$MAINTAIN_CRON"; fi
  az_run containerapp job create --name "$name" --resource-group "$RESOURCE_GROUP" \
    --environment "$ENVIRONMENT_NAME" --trigger-type Schedule --cron-expression "$cron" \
    --replica-timeout "$TIMEOUT_SECONDS" --replica-retry-limit 0 --parallelism 1 --replica-completion-count 1 \
    --image "$IMAGE" --registry-server "$REGISTRY.azurecr.io" --registry-identity "$IDENTITY_ID" \
    --mi-user-assigned "$IDENTITY_ID" --cpu "$CPU" --memory "$MEMORY" \
    --secrets "pseudonym-key=keyvaultref:$SECRET_URI,identityref:$IDENTITY_ID" \
    --env-vars "AZURE_STORAGE_ACCOUNT=$STORAGE_ACCOUNT" "AZURE_CLIENT_ID=$CLIENT_ID" \
    "LAKEHOUSE_PSEUDONYM_KEY=secretref:pseudonym-key" "LAKEHOUSE_CONF=/app/conf/azure.toml" \
    --args "$job" --output none
done

echo "deployed: job $JOB_NAME runs '$CRON', $JOB_NAME-maintain '$MAINTAIN_CRON'; start a run now with:" >&2
echo "  az containerapp job start --name $JOB_NAME --resource-group $RESOURCE_GROUP" >&2
