// Server-rendered with preact: a page component and the data it shows.
export const products = [
  { id: "p1", name: "Anvil", price: 42 },
  { id: "p2", name: "Rocket skates", price: 199 },
  { id: "p3", name: "Giant magnet", price: 75 },
];

function Product({ product }) {
  return (
    <li data-id={product.id}>
      {product.name} <span class="price">${product.price}</span>
    </li>
  );
}

export function Page({ greeting }) {
  return (
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <title>Isola router app</title>
      </head>
      <body>
        <h1>Isola router app</h1>
        <p>{greeting}, rendered at the edge.</p>
        <ul>
          {products.map((product) => (
            <Product product={product} />
          ))}
        </ul>
      </body>
    </html>
  );
}
