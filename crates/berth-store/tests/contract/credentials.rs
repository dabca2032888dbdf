//! The credentials role: stored by id, found, listed, replaced and revoked.

use super::{Connect, config, wid};
use berth_core::*;

fn credential(seed: u8, role: Role) -> (Token, Credential) {
    let token = Token::from_random([seed; 8], [seed; 32]);
    let credential = Credential::issue(&token, role, format!("c{seed}"), u64::from(seed)).unwrap();
    (token, credential)
}

pub async fn credentials_are_stored_found_and_revoked(connect: impl Connect) {
    let config = config("credentials");
    let store = connect(config.clone()).await;
    let other_client = connect(config).await;
    let (admin_token, admin) = credential(1, Role::Admin);
    let (_, worker) = credential(2, Role::Worker { worker: wid("w-1") });
    assert!(store.credential(admin_token.id()).await.unwrap().is_none());
    store.put_credential(&admin).await.unwrap();
    store.put_credential(&worker).await.unwrap();
    store.put_credential(&admin).await.unwrap();
    let found = other_client
        .credential(admin_token.id())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found, admin);
    assert!(found.admits(&admin_token));
    let listed = other_client.credentials().await.unwrap();
    assert_eq!(listed, vec![admin.clone(), worker.clone()]);

    let unknown = Token::from_random([9; 8], [9; 32]);
    let revoked = store
        .revoke_credentials(&[worker.id.clone(), unknown.id().clone()])
        .await
        .unwrap();
    assert_eq!(revoked, 1);
    assert!(other_client.credential(&worker.id).await.unwrap().is_none());
    assert_eq!(store.revoke_credentials(&[]).await.unwrap(), 0);
    assert_eq!(other_client.credentials().await.unwrap(), vec![admin]);
}
