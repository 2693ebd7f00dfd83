use fred::prelude::*;
#[tokio::main]
async fn main() {
    let c = Client::new(Config::from_url("redis://127.0.0.1:6379").unwrap(), None, None, None);
    c.init().await.unwrap();
    let _: Value = c.del(vec!["dbg:s"]).await.unwrap();
    let _: String = c.xadd("dbg:s", false, None, "*", vec![("id", "x".to_owned()), ("payload", "{}".to_owned()), ("attempt", "1".to_owned())]).await.unwrap();
    let _: Value = c.xgroup_create("dbg:s", "workers", "0", true).await.unwrap();
    let v: Value = c.xreadgroup("workers", "c1", Some(1), Some(10), false, "dbg:s", ">").await.unwrap();
    println!("{v:?}");
    let _: Value = c.del(vec!["dbg:s"]).await.unwrap();
}
