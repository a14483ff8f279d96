"""PLACEHOLDER written by the lead so the app imports while tokens/ is being built; replace freely."""

import math


class _Chars4:
    def count_request(self, request):
        import json

        return max(1, math.ceil(len(json.dumps(request)) / 4))

    def stats(self):
        return {}


def build_counter(settings):
    del settings
    return _Chars4()
