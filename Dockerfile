# anthropic-proxy: gunicorn (gthread) serving the Flask app on :5000.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY . .
RUN useradd --create-home --uid 10001 proxy && chown -R proxy /app
USER proxy

EXPOSE 5000
# stdlib only, so the check needs nothing the image does not already have.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:5000/health', timeout=4).status != 200)"

CMD ["gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]
