; Inno Setup script for the PyInstaller one-folder build (dist\kerbside).
; Build: pyinstaller packaging\kerbside.spec, then iscc packaging\windows\kerbside.iss
; Per-user data (the encrypted cache) lives in %LOCALAPPDATA%\kerbside, not in a roaming or
; synced folder (SECURITY.md 8); uninstall leaves it for the Trust's wipe policy to remove.
[Setup]
AppName=Kerbside
AppVersion=0.1.0
AppPublisher=Kerbside
DefaultDirName={autopf}\Kerbside
DefaultGroupName=Kerbside
OutputBaseFilename=kerbside-setup
Compression=lzma2
SolidCompression=yes
PrivilegesRequired=admin
ArchitecturesInstallIn64BitMode=x64compatible

[Files]
Source: "..\..\dist\kerbside\*"; DestDir: "{app}"; Flags: recursesubdirs ignoreversion

[Icons]
Name: "{group}\Kerbside"; Filename: "{app}\kerbside.exe"; Parameters: "gui"
Name: "{commondesktop}\Kerbside"; Filename: "{app}\kerbside.exe"; Parameters: "gui"
