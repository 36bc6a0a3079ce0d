//! Signing in as the notes app does: the user pool's `InitiateAuth` (`USER_PASSWORD_AUTH`) gives
//! an ID token; the identity pool's `GetId` and `GetCredentialsForIdentity` trade it for an
//! identity id and temporary AWS credentials. None of the three calls is signed, so they are
//! plain JSON posts here rather than two more SDK crates (the Cognito user-pool SDK alone would
//! be most of this tool's build time).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_credential_types::Credentials;
use serde_json::{json, Value};

use crate::{send, Client, LoadError};

/// How long one Cognito call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(20);

/// Where and as whom to sign in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    /// The region of the pools (and of the API).
    pub region: String,
    /// The user pool, e.g. `us-east-1_AbCdEf123`.
    pub user_pool_id: String,
    /// The user pool's app client (no secret, `USER_PASSWORD_AUTH` allowed).
    pub client_id: String,
    /// The identity pool, e.g. `us-east-1:1111-...`.
    pub identity_pool_id: String,
    /// The user's name (the e-mail address in the notes stack's pool).
    pub username: String,
    /// The user's password.
    pub password: String,
    /// The user pool API's URL (`https://cognito-idp.REGION.amazonaws.com/` unless overridden).
    pub user_pool_endpoint: String,
    /// The identity pool API's URL (`https://cognito-identity.REGION.amazonaws.com/` unless
    /// overridden).
    pub identity_endpoint: String,
}

impl Login {
    /// The public Cognito endpoints of `region`: (user pools, identity pools).
    #[must_use]
    pub fn endpoints(region: &str) -> (String, String) {
        (
            format!("https://cognito-idp.{region}.amazonaws.com/"),
            format!("https://cognito-identity.{region}.amazonaws.com/"),
        )
    }

    /// The `Logins` key of the user pool: `cognito-idp.REGION.amazonaws.com/POOL`.
    #[must_use]
    pub fn provider(&self) -> String {
        format!(
            "cognito-idp.{}.amazonaws.com/{}",
            self.region, self.user_pool_id
        )
    }
}

/// A signed-in user: its identity and temporary credentials.
#[derive(Debug, Clone)]
pub struct Session {
    /// The Cognito identity id (the notes' owner).
    pub identity_id: String,
    /// Temporary AWS credentials for that identity.
    pub credentials: Credentials,
    /// When the credentials expire.
    pub expires: SystemTime,
}

/// One Cognito JSON call: `target` is e.g. `AWSCognitoIdentityService.GetId`.
///
/// # Errors
/// The call failed: the error names the operation and Cognito's error type and message.
pub async fn call(
    client: &Client,
    endpoint: &str,
    target: &str,
    body: &Value,
) -> Result<Value, LoadError> {
    let operation = target.rsplit('.').next().unwrap_or(target);
    let failed = |why: String| LoadError::Call {
        what: format!("Cognito {operation} at {endpoint}"),
        why,
    };
    let request = http::Request::post(endpoint)
        .header("content-type", "application/x-amz-json-1.1")
        .header("x-amz-target", target)
        .body(body.to_string().into_bytes())
        .map_err(|e| failed(e.to_string()))?;
    let answer = send(client, request, CALL_TIMEOUT).await.map_err(failed)?;
    let value: Value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
    if (200..300).contains(&answer.status) {
        return Ok(value);
    }
    let kind = value["__type"].as_str().unwrap_or("error");
    let kind = kind.rsplit('#').next().unwrap_or(kind);
    let message = value["message"]
        .as_str()
        .or_else(|| value["Message"].as_str())
        .unwrap_or("");
    Err(failed(format!("HTTP {}: {kind}: {message}", answer.status)))
}

/// A string field of a Cognito answer, or an error naming it.
fn field<'a>(value: &'a Value, path: &str, what: &str) -> Result<&'a str, LoadError> {
    value
        .pointer(path)
        .and_then(Value::as_str)
        .ok_or_else(|| LoadError::Call {
            what: what.to_string(),
            why: format!("the answer has no {path}: {value}"),
        })
}

/// Signs in and returns the identity's temporary credentials.
///
/// # Errors
/// A call failed (wrong password, unknown pool, a user who must still set a permanent password,
/// ...); the error says which call and why.
pub async fn sign_in(client: &Client, login: &Login) -> Result<Session, LoadError> {
    let auth = call(
        client,
        &login.user_pool_endpoint,
        "AWSCognitoIdentityProviderService.InitiateAuth",
        &json!({
            "AuthFlow": "USER_PASSWORD_AUTH",
            "ClientId": login.client_id,
            "AuthParameters": {"USERNAME": login.username, "PASSWORD": login.password},
        }),
    )
    .await?;
    if let Some(challenge) = auth["ChallengeName"].as_str() {
        return Err(LoadError::Call {
            what: "Cognito InitiateAuth".into(),
            why: format!(
                "the user must answer {challenge} first; for a game-day user, set a permanent password: aws cognito-idp admin-set-user-password --user-pool-id {} --username {} --password ... --permanent",
                login.user_pool_id, login.username
            ),
        });
    }
    let token = field(
        &auth,
        "/AuthenticationResult/IdToken",
        "Cognito InitiateAuth",
    )?;
    let logins = json!({ login.provider(): token });
    let id = call(
        client,
        &login.identity_endpoint,
        "AWSCognitoIdentityService.GetId",
        &json!({"IdentityPoolId": login.identity_pool_id, "Logins": logins}),
    )
    .await?;
    let identity_id = field(&id, "/IdentityId", "Cognito GetId")?.to_string();
    let answer = call(
        client,
        &login.identity_endpoint,
        "AWSCognitoIdentityService.GetCredentialsForIdentity",
        &json!({"IdentityId": identity_id, "Logins": logins}),
    )
    .await?;
    let what = "Cognito GetCredentialsForIdentity";
    let expires = answer["Credentials"]["Expiration"]
        .as_f64()
        .filter(|s| s.is_finite() && *s > 0.0 && *s < 1e11)
        .map_or_else(
            || SystemTime::now() + Duration::from_secs(15 * 60),
            |s| UNIX_EPOCH + Duration::from_secs_f64(s),
        );
    let credentials = Credentials::new(
        field(&answer, "/Credentials/AccessKeyId", what)?,
        field(&answer, "/Credentials/SecretKey", what)?,
        Some(field(&answer, "/Credentials/SessionToken", what)?.to_string()),
        Some(expires),
        "cognito-identity-pool",
    );
    Ok(Session {
        identity_id,
        credentials,
        expires,
    })
}
