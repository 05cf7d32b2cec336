"""Dashboard URLs."""

app_name = "bulkjobs"
urlpatterns = []
