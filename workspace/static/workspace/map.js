// The map of a converted raster: Leaflet (global L, from django-leaflet's static files)
// showing the COG's own tiles from its TileJSON, fitted to its bounds. A basemap is drawn
// underneath only when the deployment names one (TAGGER_MAP_BASEMAP_URL): by default the
// map needs nothing from the internet.

export function showRasterMap(element, tilejson, { basemapUrl = "", basemapAttribution = "" } = {}) {
  const [west, south, east, north] = tilejson.bounds;
  // West beyond east: the raster crosses the antimeridian. Leaflet's longitudes go on past
  // 180, and its tile layer wraps them back onto the tiles that exist.
  const crosses = east < west;
  const bounds = L.latLngBounds([south, west], [north, crosses ? east + 360 : east]);
  const map = L.map(element, {
    minZoom: Math.max(0, tilejson.minzoom - 4),
    maxZoom: tilejson.maxzoom + 2,
    // Leaflet's own key bindings (arrows to pan, +/- to zoom) once the map has focus.
    keyboard: true,
  });
  if (basemapUrl) {
    L.tileLayer(basemapUrl, { attribution: basemapAttribution, maxZoom: 22 }).addTo(map);
  }
  L.tileLayer(tilejson.tiles[0], {
    bounds,
    maxNativeZoom: tilejson.maxzoom,
    maxZoom: tilejson.maxzoom + 2,
    noWrap: !crosses,
    className: "raster-tiles",
  }).addTo(map);
  // Whole zoom levels: at fractional ones Leaflet leaves hairline seams between tiles.
  map.fitBounds(bounds);
  return map;
}
