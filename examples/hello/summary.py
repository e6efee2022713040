"""A sibling module: rgrid sends it along because process.py imports it."""


def describe(rows, column):
    values = [float(row[column]) for row in rows]
    total = sum(values)
    return {"count": len(values), "total": total, "mean": total / len(values) if values else 0.0}
