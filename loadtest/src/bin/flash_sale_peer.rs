//! The common flash-sale design, as the peer vaxslot is measured against: an
//! actix-web handler that does one Redis Lua call per booking (check the
//! slot's counter, decrement it, record the order), with no actors, no group
//! commit, no authentication and no rules. On Redis with AOF and
//! `appendfsync always`, like vaxslot's Redis store.
//!
//! `PUT /setup {"slots":N,"capacity":C}` resets N slot counters to C;
//! `POST /book {"slot":S,"resident":R}` answers 201 or 409.

use actix_web::{App, HttpResponse, HttpServer, web};
use clap::Parser;
use redis::aio::ConnectionManager;
use serde::Deserialize;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    #[arg(long, default_value = "redis://127.0.0.1:6379/1")]
    redis_url: String,
}

const BOOK: &str = r"
local left = tonumber(redis.call('GET', KEYS[1]) or '0')
if left <= 0 then return 0 end
redis.call('DECR', KEYS[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return 1
";

struct Peer {
    redis: ConnectionManager,
    book: redis::Script,
}

#[derive(Deserialize)]
struct Setup {
    slots: u64,
    capacity: u64,
}

#[derive(Deserialize)]
struct Booking {
    slot: u64,
    resident: u64,
}

async fn setup(peer: web::Data<Peer>, body: web::Json<Setup>) -> HttpResponse {
    let mut redis = peer.redis.clone();
    let mut pipe = redis::pipe();
    pipe.atomic().del("peer:orders").ignore();
    for slot in 0..body.slots {
        pipe.set(format!("peer:slot:{slot}"), body.capacity)
            .ignore();
    }
    match pipe.query_async::<()>(&mut redis).await {
        Ok(()) => HttpResponse::Ok().finish(),
        Err(_) => HttpResponse::ServiceUnavailable().finish(),
    }
}

async fn book(peer: web::Data<Peer>, body: web::Json<Booking>) -> HttpResponse {
    let mut redis = peer.redis.clone();
    let booked: Result<i64, _> = peer
        .book
        .key(format!("peer:slot:{}", body.slot))
        .key("peer:orders")
        .arg(body.resident)
        .arg(body.slot)
        .invoke_async(&mut redis)
        .await;
    match booked {
        Ok(1) => HttpResponse::Created().finish(),
        Ok(_) => HttpResponse::Conflict().finish(),
        Err(_) => HttpResponse::ServiceUnavailable().finish(),
    }
}

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let redis = redis::Client::open(args.redis_url.as_str())?
        .get_connection_manager()
        .await?;
    let peer = web::Data::new(Peer {
        redis,
        book: redis::Script::new(BOOK),
    });
    let server = HttpServer::new(move || {
        App::new()
            .app_data(peer.clone())
            .route("/setup", web::put().to(setup))
            .route("/book", web::post().to(book))
    })
    .bind(&args.listen)?;
    for address in server.addrs() {
        println!("flash-sale peer listening on http://{address}");
    }
    server.run().await?;
    Ok(())
}
