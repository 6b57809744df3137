"""The web app: pages for members, cashiers, merchant staff and the operator (docs/web.md).

A boundary like the endpoints: it calls the services, and nothing imports it but
``patron.app``.
"""
