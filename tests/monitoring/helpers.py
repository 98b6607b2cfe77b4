"""Reading `/metrics` as Prometheus does."""

from prometheus_client.parser import text_string_to_metric_families


def scrape(client, **extra) -> dict:
    """{(sample name, frozenset of labels): value} of one scrape through a Django client."""
    response = client.get("/metrics", **extra)
    assert response.status_code == 200, response.content
    return samples(response.content.decode())


def samples(text: str) -> dict:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(scraped: dict, name: str, **labels) -> float | None:
    return scraped.get((name, frozenset((k, str(v)) for k, v in labels.items())))


def names(scraped: dict) -> set[str]:
    return {name for name, _ in scraped}
