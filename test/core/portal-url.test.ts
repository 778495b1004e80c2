import should from "should";
import { validatePortalUrl } from "../../src/core/client/client";
import type { Bitrix24Error } from "../../src/core/rest/errors";
import { isLoopbackHost, validateOAuthServerUrl, validateWebhookUrl } from "../../src/core/rest/portal-url";
import { thrown } from "../kit/rejection";

function configError(fn: () => unknown): Bitrix24Error {
  return thrown(fn, "INVALID_CONFIG");
}

describe("core/portal-url", () => {
  it("normalises https portal URLs to their origin", () => {
    should(validatePortalUrl("https://example.bitrix24.com/")).equal("https://example.bitrix24.com");
    should(validatePortalUrl(" https://Example.Bitrix24.com/crm/deal/ ")).equal("https://example.bitrix24.com");
    should(validatePortalUrl("example.bitrix24.com")).equal("https://example.bitrix24.com");
    should(validatePortalUrl("https://crm.example.org:8443")).equal("https://crm.example.org:8443");
  });

  it("allows http only for loopback hosts", () => {
    should(validatePortalUrl("http://127.0.0.1:3000")).equal("http://127.0.0.1:3000");
    should(validatePortalUrl("http://127.5.6.7")).equal("http://127.5.6.7");
    should(validatePortalUrl("http://localhost:8080/")).equal("http://localhost:8080");
    should(validatePortalUrl("http://[::1]:8080")).equal("http://[::1]:8080");
    should(configError(() => validatePortalUrl("http://example.bitrix24.com")).message).match(
      /Bitrix24 requires https:\/\/ \(http is allowed only for loopback hosts/,
    );
    should(configError(() => validatePortalUrl("http://128.0.0.1")).message).match(/requires https/);
    should(configError(() => validatePortalUrl("http://localhost.evil.com")).message).match(/requires https/);
    should(isLoopbackHost("[::1]")).be.true();
    should(isLoopbackHost("10.0.0.1")).be.false();
  });

  it("explains what is wrong with other input", () => {
    should(configError(() => validatePortalUrl("")).message).match(/portal URL: it is empty/);
    should(configError(() => validatePortalUrl("ftp://example.com")).message).match(/only https/);
    should(configError(() => validatePortalUrl("https://user:pw@example.com")).message).match(/user name or password/);
    should(configError(() => validatePortalUrl("https://exa mple.com")).message).match(/is not a URL/);
  });

  it("validates webhook and OAuth server URLs with the same rule", () => {
    should(validateWebhookUrl("https://example.bitrix24.com/rest/1/abc123")).equal(
      "https://example.bitrix24.com/rest/1/abc123/",
    );
    should(configError(() => validateWebhookUrl("https://example.bitrix24.com/rest/")).message).match(/user id/);
    should(configError(() => validateWebhookUrl("http://example.bitrix24.com/rest/1/x/")).message).match(/https/);
    should(validateOAuthServerUrl("https://oauth.bitrix.info/")).equal("https://oauth.bitrix.info");
    should(validateOAuthServerUrl("http://127.0.0.1:9000")).equal("http://127.0.0.1:9000");
  });
});
