//! The OpenAPI 3.1 document, generated from the handlers' annotations: every route, parameter,
//! response and error shape, `/data_usage`'s Basic auth included.

use axum::body::Bytes;
use utoipa::openapi::OpenApi as Document;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "WTC streaming API",
        description = "Market data (latest prices, M1/M30/H1 candles, TA-Lib-exact indicators) and \
                       exact hourly usage per MSISDN, from DynamoDB. Times are UTC; market times \
                       are RFC 3339. Errors are `{\"error\", \"parameter\"}`. Every successful \
                       response carries a strong `ETag`: send it back in `If-None-Match` to get \
                       304 while nothing changed.",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    servers((url = ".", description = "Where this document was served from")),
    paths(
        openapi_document,
        crate::http::docs,
        crate::http::dashboard,
        crate::http::asset,
        home
    ),
    modifiers(&BasicAuth),
    tags(
        (name = "market", description = "Latest prices, candles and indicators"),
        (name = "usage", description = "Hourly usage per MSISDN (HTTP Basic)"),
        (name = "service", description = "Health and this document"),
        (name = "pages", description = "The docs and the dashboard, served by the API itself")
    )
)]
struct ApiDoc;

struct BasicAuth;

impl Modify for BasicAuth {
    fn modify(&self, openapi: &mut Document) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "basic",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Basic)
                    .description(Some(
                        "The API's user and password (Secrets Manager in AWS; `wtc` / \
                         `wtc-local` on the local stack)",
                    ))
                    .build(),
            ),
        );
    }
}

/// This document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "service",
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json",
        headers(("ETag" = String, description = "Strong validator of the body"))),
        (status = 304, description = "Not modified since the ETag sent in `If-None-Match`"))
)]
#[allow(dead_code)]
fn openapi_document() {}

/// The dashboard, by a redirect.
#[utoipa::path(
    get,
    path = "/",
    tag = "pages",
    responses((status = 303, description = "See `/dashboard`",
        headers(("Location" = String, description = "`dashboard`"))))
)]
#[allow(dead_code)]
fn home() {}

/// The document the routes are added to.
pub fn base() -> Document {
    let mut document = ApiDoc::openapi();
    document.info.version = env!("CARGO_PKG_VERSION").to_owned();
    document
}

/// The finished document, serialised once.
pub fn finish(document: Document) -> Bytes {
    Bytes::from(document.to_json().unwrap_or_default())
}
