using System.Text.Json;
using System.Text.Json.Serialization;
using Shepherd.Engine.Configuration;

namespace Shepherd.Server.Configuration;

/// <summary>
/// The configuration file (<c>shepherd.json</c>) as the commands read it: the engine's sections
/// and the <c>server</c> section, which only the server uses. One file serves <c>shepherd
/// serve</c>, <c>run</c> and <c>estimate</c> alike, so each reads it whole.
/// </summary>
public sealed class ConfigFile : ShepherdConfig
{
    /// <summary>How <c>shepherd serve</c> listens, whom it lets in, and its limits.</summary>
    public ServerConfig? Server { get; set; }

    /// <summary>Reads and checks a configuration file; errors name the file, the line and the property.</summary>
    public static new ConfigFile Load(string path) => Load(path, ConfigFileJson.Default.ConfigFile);

    /// <inheritdoc/>
    protected override void CheckSections(string path) => Server?.Check($"{path}: server");
}

[JsonSourceGenerationOptions(
    PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase,
    UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
    ReadCommentHandling = JsonCommentHandling.Skip,
    AllowTrailingCommas = true)]
[JsonSerializable(typeof(ConfigFile))]
internal sealed partial class ConfigFileJson : JsonSerializerContext;
