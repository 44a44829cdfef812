"""Each page's data as one JSON-able dict: the template paints it first, the stream sends it
again on each change and static/dashboard.js puts it into the same elements."""
