package dplakehouse.azure;

import java.io.IOException;
import java.io.InputStream;
import java.net.HttpURLConnection;
import java.net.URI;
import java.net.URLEncoder;
import java.nio.charset.StandardCharsets;
import java.util.Date;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.azurebfs.extensions.CustomTokenProviderAdaptee;

/**
 * ABFS OAuth tokens from the managed identity of an Azure Container Apps job (or App Service).
 *
 * <p>Hadoop's own MsiTokenProvider speaks the VM metadata-service protocol (IMDS). Container Apps
 * instead give a local identity endpoint in IDENTITY_ENDPOINT, answering only requests that carry
 * the secret IDENTITY_HEADER (api-version 2019-08-01). This provider speaks that protocol.
 * Configuration (each defaults to the environment the platform sets):
 * lakehouse.identity.endpoint (IDENTITY_ENDPOINT), lakehouse.identity.header (IDENTITY_HEADER),
 * lakehouse.identity.client.id (AZURE_CLIENT_ID; for a user-assigned identity).
 */
public class ManagedIdentityTokenProvider implements CustomTokenProviderAdaptee {
  static final String RESOURCE = "https://storage.azure.com/";
  private static final Pattern TOKEN = Pattern.compile("\"access_token\"\\s*:\\s*\"([^\"]+)\"");
  private static final Pattern EXPIRES = Pattern.compile("\"expires_on\"\\s*:\\s*\"?(\\d+)\"?");

  private String endpoint;
  private String header;
  private String clientId;
  private volatile Date expiry = new Date(0);

  private static String setting(Configuration conf, String key, String env) {
    String value = conf.get(key);
    return value != null && !value.isEmpty() ? value : System.getenv(env);
  }

  @Override
  public void initialize(Configuration conf, String accountName) throws IOException {
    endpoint = setting(conf, "lakehouse.identity.endpoint", "IDENTITY_ENDPOINT");
    header = setting(conf, "lakehouse.identity.header", "IDENTITY_HEADER");
    clientId = setting(conf, "lakehouse.identity.client.id", "AZURE_CLIENT_ID");
    if (endpoint == null || header == null) {
      throw new IOException("no managed identity endpoint: IDENTITY_ENDPOINT and IDENTITY_HEADER are not set "
          + "(is a managed identity assigned to this Container Apps job?)");
    }
  }

  @Override
  public String getAccessToken() throws IOException {
    String query = "?api-version=2019-08-01&resource=" + URLEncoder.encode(RESOURCE, StandardCharsets.UTF_8)
        + (clientId == null || clientId.isEmpty() ? "" : "&client_id=" + URLEncoder.encode(clientId, StandardCharsets.UTF_8));
    HttpURLConnection http = (HttpURLConnection) URI.create(endpoint + query).toURL().openConnection();
    http.setRequestProperty("X-IDENTITY-HEADER", header);
    http.setConnectTimeout(10_000);
    http.setReadTimeout(30_000);
    int status = http.getResponseCode();
    String body;
    try (InputStream in = status < 400 ? http.getInputStream() : http.getErrorStream()) {
      body = in == null ? "" : new String(in.readAllBytes(), StandardCharsets.UTF_8);
    }
    if (status != 200) {
      // The body names the problem (unknown identity, missing role); it holds no token.
      throw new IOException("managed identity endpoint answered HTTP " + status + ": "
          + body.substring(0, Math.min(body.length(), 300)));
    }
    Matcher token = TOKEN.matcher(body);
    Matcher expires = EXPIRES.matcher(body);
    if (!token.find() || !expires.find()) {
      throw new IOException("managed identity endpoint returned no access_token/expires_on");
    }
    expiry = new Date(Long.parseLong(expires.group(1)) * 1000L);
    return token.group(1);
  }

  @Override
  public Date getExpiryTime() {
    return expiry;
  }
}
