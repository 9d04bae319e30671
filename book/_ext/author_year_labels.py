"""The bibliography's labels in the author-year form the in-text citations use ("Tao et al. 2022"), instead of
pybtex's alpha labels ("[TAO+22]"): a pybtex label style and a formatting style that uses it, registered as
``author_year`` for sphinxcontrib-bibtex's ``bibtex_default_style``."""
from pybtex.plugin import register_plugin
from pybtex.style.formatting.unsrt import Style as UnsrtStyle
from pybtex.style.labels import BaseLabelStyle


class AuthorYearLabels(BaseLabelStyle):
    def format_labels(self, sorted_entries):
        for entry in sorted_entries:
            authors = entry.persons.get("author", [])
            last = [" ".join(p.prelast_names + p.last_names).replace("{", "").replace("}", "") for p in authors]
            who = last[0] if len(last) == 1 else f"{last[0]} and {last[1]}" if len(last) == 2 else f"{last[0]} et al."
            yield f"{who} {entry.fields.get('year', '')}".strip() if last else entry.key


class AuthorYearStyle(UnsrtStyle):
    default_label_style = "author_year"
    default_sorting_style = "author_year_title"


def setup(app):
    register_plugin("pybtex.style.labels", "author_year", AuthorYearLabels)
    register_plugin("pybtex.style.formatting", "author_year", AuthorYearStyle)
    return {"parallel_read_safe": True}
