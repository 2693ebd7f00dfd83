//! Wiring of the call path: the provider factory over the store's encrypted
//! credentials, and the [`CallServices`] the telephony routes run on.

use std::sync::Arc;

use futures::future::BoxFuture;
use switchboard_actors::Tree;
use switchboard_api::CallServices;
use switchboard_bus::Bus;
use switchboard_config::Settings;
use switchboard_domain::{CredentialKind, TenantId};
use switchboard_providers::openai_speech::OpenAiSpeechConfig;
use switchboard_providers::standard::{KeySource, StandardConfig, StandardProviders};
use switchboard_providers::{ProviderError, ProviderErrorKind, SecretString};
use switchboard_store::Store;

/// Tenants' provider keys, decrypted from their stored credentials on use.
pub struct StoreKeys(pub Store);

impl StoreKeys {
    /// The `api_key` secret of the tenant's credential of `kind`.
    async fn api_key(
        &self,
        tenant: TenantId,
        kind: CredentialKind,
        provider: &'static str,
    ) -> Result<Option<SecretString>, ProviderError> {
        let found = self.0.credentials().find_by_kind(tenant, kind).await.map_err(|e| {
            tracing::error!(%tenant, provider, error = %e, "cannot read the tenant's credential");
            ProviderError::new(provider, ProviderErrorKind::Config("credential unreadable".into()))
        })?;
        Ok(found.and_then(|(_, secrets)| {
            secrets
                .get("api_key")
                .map(|s| SecretString::from(s.expose().to_owned()))
        }))
    }
}

impl KeySource for StoreKeys {
    fn openai_key(&self, tenant: TenantId) -> BoxFuture<'_, Result<Option<SecretString>, ProviderError>> {
        Box::pin(self.api_key(tenant, CredentialKind::OpenAi, "openai"))
    }

    fn google_key(&self, tenant: TenantId) -> BoxFuture<'_, Result<Option<SecretString>, ProviderError>> {
        Box::pin(self.api_key(tenant, CredentialKind::Google, "google"))
    }

    fn twilio(&self, tenant: TenantId) -> BoxFuture<'_, Result<Option<(String, SecretString)>, ProviderError>> {
        Box::pin(async move {
            let found = self
                .0
                .credentials()
                .find_by_kind(tenant, CredentialKind::Twilio)
                .await
                .map_err(|e| {
                    tracing::error!(%tenant, error = %e, "cannot read the tenant's Twilio credential");
                    ProviderError::new("twilio", ProviderErrorKind::Config("credential unreadable".into()))
                })?;
            Ok(found.and_then(|(credential, secrets)| {
                let sid = credential.public.get("account_sid")?.as_str()?.to_owned();
                let token = SecretString::from(secrets.get("auth_token")?.expose().to_owned());
                Some((sid, token))
            }))
        })
    }
}

/// The call path's services for the API.
pub fn call_services(
    settings: &Settings,
    store: &Store,
    bus: &Bus,
    tree: &Tree,
) -> Result<CallServices, ProviderError> {
    let providers = StandardProviders::new(StandardConfig {
        local: OpenAiSpeechConfig::local(&settings.speech.base_url, settings.speech.tts_sample_rate),
        keys: Arc::new(StoreKeys(store.clone())),
        twilio_api_base: Some(settings.calls.twilio_api_base_url.clone()),
    })?;
    Ok(CallServices {
        tree: tree.clone(),
        bus: bus.clone(),
        providers: Arc::new(providers),
        recordings_dir: settings
            .calls
            .record
            .then(|| settings.storage.data_dir.join("recordings")),
    })
}
