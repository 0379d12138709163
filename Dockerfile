# deployflow image: the official Airflow image, extended the documented way
# (https://airflow.apache.org/docs/docker-stack/build.html), used by every Airflow service
# and by the deployflow local runtime in docker-compose.yaml. dags/, plugins/ and include/
# are mounted at run time, not copied.
FROM apache/airflow:3.3.2-python3.11

# System packages are installed as root, then the image goes back to the airflow user.
# Node.js runs Azurite (the Azure Storage emulator) for tests and scripts inside the image;
# Debian's Node 18 is older than azurite 3.37's declared engine (>=22) but serves blobs fine.
# npm is only needed to fetch Azurite, so it is removed again in the same layer.
USER root
RUN apt-get update \
    && apt-get install -y --no-install-recommends nodejs npm \
    && npm install --prefix /opt/azurite --omit=dev --no-audit --no-fund azurite@3.37.0 \
    && npm cache clean --force \
    && apt-get purge -y npm \
    && apt-get autoremove -yqq --purge \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/* /root/.npm \
    && mkdir -p /opt/deployflow/data \
    && chown -R airflow:0 /opt/deployflow \
    && chmod -R g+rwX /opt/deployflow
ENV PATH="${PATH}:/opt/azurite/node_modules/.bin"

USER airflow
COPY --chown=airflow:0 requirements.txt constraints.txt /
# Naming the image's own Airflow version makes pip fail, rather than silently up- or
# downgrade Airflow, if requirements.txt pins a different one. constraints.txt holds the
# versions `./dev test` runs with.
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" -r /requirements.txt -c /constraints.txt

# deployflow itself, editable, so Airflow finds its provider entry point (the azure_ml and
# deployflow_local connection types in the UI). The plugins/ copied here is what the mount
# at run time replaces.
COPY --chown=airflow:0 pyproject.toml /opt/airflow/pyproject.toml
COPY --chown=airflow:0 plugins /opt/airflow/plugins
RUN pip install --no-cache-dir --no-deps -e /opt/airflow
