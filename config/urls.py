"""Root URL configuration."""

from django.conf import settings
from django.conf.urls.static import static
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.generic import RedirectView

from . import signin

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="bulkjobs:dashboard"), name="home"),
    path("admin/", admin.site.urls),
    # Django's sign-in, throttled per address and per username before any hashing.
    path("accounts/login/", signin.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", include("cards.urls")),
    path("", include("bulkjobs.web.urls")),
    path("", include("emails.urls")),
    path("", include("wallet.urls")),
]

if settings.DEBUG:
    # Uploaded card photos in development; production serves MEDIA_ROOT from the web server.
    urlpatterns += static(settings.MEDIA_URL, document_root=settings.MEDIA_ROOT)
