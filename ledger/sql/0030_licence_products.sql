-- Projection: products (SKUs) per tenant.
CREATE TABLE licence_products (
  tenant_id  text COLLATE "C" NOT NULL,
  product_id text COLLATE "C" NOT NULL,
  name       text NOT NULL,
  PRIMARY KEY (tenant_id, product_id)
);
GRANT SELECT, INSERT, UPDATE, DELETE ON licence_products TO seatledger_app;
