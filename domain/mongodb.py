"""What the in-cluster MongoDB is reached by: its port, and the identities of its members and seeding Jobs, which
the access plan admits and the database's own objects carry."""

PORT = 27017
MEMBER_ACCOUNT = "mongodb"
SEED_ACCOUNT = "mongodb-seed"
SEED_POD_LABELS = {"app.kubernetes.io/component": "seed"}
